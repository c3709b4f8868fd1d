# The C++ package (pslerp::pslerp and its parts): what each library of the package shares.
# Included by the top-level CMakeLists.txt before the libraries; the export, the config file
# and pslerp::pslerp are made there.

include(GNUInstallDirs)

set(PSLERP_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/pslerp)
set(PSLERP_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/pslerp
    CACHE STRING "Folder, relative to CMAKE_INSTALL_PREFIX, that receives pslerpConfig.cmake")

# pslerp_package_library(<target> <export name>)
#
# Makes the static library <target> (made in the calling folder) part of the installed package:
# pslerp::<export name> in the build tree (an alias) and once installed; C++17 for whoever
# links it (the headers need it); the library to lib/ and the calling folder's headers (*.h,
# subfolders kept) to include/pslerp/<folder>/, since code includes them as "<folder>/x.h".
# The target's own include directory must be
#   $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> $<INSTALL_INTERFACE:${PSLERP_INSTALL_INCLUDEDIR}>.
function(pslerp_package_library target export_name)
  add_library(pslerp::${export_name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  target_compile_features(${target} PUBLIC cxx_std_17)
  install(TARGETS ${target} EXPORT pslerpTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development)
  file(RELATIVE_PATH folder ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/
          DESTINATION ${PSLERP_INSTALL_INCLUDEDIR}/${folder}
          COMPONENT Development
          FILES_MATCHING PATTERN "*.h")
endfunction()
