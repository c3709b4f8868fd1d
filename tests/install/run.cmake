# ctest -L install: installs the build into a fresh prefix, then configures, builds and runs
# the consumer project next to this file against that prefix alone.
#
#   cmake -DBUILD_DIR=<pslerp build> -DWORK_DIR=<scratch> [-DCONFIG=<config>]
#         [-DGENERATOR=<generator>] [-DCXX_COMPILER=<c++>] [-DEXE_LINKER_FLAGS=<flags>]
#         -P run.cmake
#
# WORK_DIR/prefix receives the install and WORK_DIR/consumer the consumer's build; both are
# emptied first.
foreach(var BUILD_DIR WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "run.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/consumer)
file(REMOVE_RECURSE ${prefix} ${consumer_build})

function(run_step what)
  message(STATUS "install test: ${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${what} failed (${rc})")
  endif()
endfunction()

set(config_args "")
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()
run_step("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} ${config_args})

set(configure_args -S ${CMAKE_CURRENT_LIST_DIR} -B ${consumer_build}
    -DCMAKE_PREFIX_PATH=${prefix}
    # Only the prefix: neither the user nor the system package registry.
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(GENERATOR)
  list(APPEND configure_args -G ${GENERATOR})
endif()
if(CONFIG)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${CONFIG})
endif()
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(EXE_LINKER_FLAGS)
  list(APPEND configure_args -DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS})
endif()
run_step("configure the consumer" ${CMAKE_COMMAND} ${configure_args})

# The package must have come from the fresh prefix (not a system copy or the build tree).
file(STRINGS ${consumer_build}/CMakeCache.txt pslerp_dir_line REGEX "^pslerp_DIR:")
string(REGEX REPLACE "^pslerp_DIR:[A-Z]+=" "" pslerp_dir "${pslerp_dir_line}")
file(REAL_PATH "${pslerp_dir}" pslerp_dir)
file(REAL_PATH "${prefix}" real_prefix)
string(FIND "${pslerp_dir}/" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "install test: pslerp was found in '${pslerp_dir}', not under '${real_prefix}'")
endif()

run_step("build the consumer" ${CMAKE_COMMAND} --build ${consumer_build} ${config_args})

set(app ${consumer_build}/pslerp_consumer)
if(CONFIG AND NOT EXISTS ${app} AND EXISTS ${consumer_build}/${CONFIG}/pslerp_consumer)
  set(app ${consumer_build}/${CONFIG}/pslerp_consumer)  # multi-config generators
endif()
run_step("run the consumer" ${app})
