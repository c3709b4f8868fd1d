// .npy / .fvecs / .ivecs reading and writing, and atomic writes: round trips, files laid out
// byte for byte as numpy writes them, and every kind of corrupt input; FIFOs refused without
// blocking, a file that shrinks while read, .npy bytes read from memory.
#include "io/array_io.h"
#include "io/digest.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <string>
#include <vector>

namespace pslerp {
namespace {

class ArrayIoTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = ::testing::TempDir() + "pslerp_array_io_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        for (const std::string& f : list_dir()) ::unlink((dir_ + "/" + f).c_str());
        ::rmdir(dir_.c_str());
    }

    std::string path(const std::string& name) const { return dir_ + "/" + name; }

    void write_raw(const std::string& name, const std::string& bytes) const {
        std::ofstream f(path(name), std::ios::binary | std::ios::trunc);
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }

    std::string read_raw(const std::string& name) const {
        std::ifstream f(path(name), std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }

    std::vector<std::string> list_dir() const {
        std::vector<std::string> out;
        if (DIR* d = ::opendir(dir_.c_str())) {
            while (dirent* e = ::readdir(d)) {
                const std::string n = e->d_name;
                if (n != "." && n != "..") out.push_back(n);
            }
            ::closedir(d);
        }
        return out;
    }

    std::string dir_;
};

/// A .npy file as numpy lays it out: magic, version, header length, dict padded with spaces
/// and a newline to a multiple of 64 bytes, then the payload.
std::string npy_file(const std::string& dict, const std::string& payload, int major = 1) {
    const size_t pre = major == 1 ? 10 : 12;
    std::string header = dict;
    const size_t total = pre + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    std::string out("\x93NUMPY", 6);
    out.push_back(static_cast<char>(major));
    out.push_back('\0');
    const size_t len = header.size();
    out.push_back(static_cast<char>(len & 0xff));
    out.push_back(static_cast<char>((len >> 8) & 0xff));
    if (major != 1) {
        out.push_back(static_cast<char>((len >> 16) & 0xff));
        out.push_back(static_cast<char>((len >> 24) & 0xff));
    }
    return out + header + payload;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

void expect_error(const absl::Status& st, const std::string& fragment) {
    EXPECT_FALSE(st.ok());
    EXPECT_NE(std::string(st.message()).find(fragment), std::string::npos)
        << "message '" << st.message() << "' lacks '" << fragment << "'";
}

TEST_F(ArrayIoTest, NpyF32RoundTrip2D) {
    std::vector<float> x(3 * 5);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i) - 1.f;
    ASSERT_TRUE(write_npy_f32(path("a.npy"), x.data(), 3, 5).ok());
    absl::StatusOr<Matrix> m = read_npy_f32(path("a.npy"));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->rows, 3);
    EXPECT_EQ(m->cols, 5);
    EXPECT_EQ(m->data, x);
    const std::string raw = read_raw("a.npy");
    EXPECT_EQ((raw.size() - x.size() * 4) % 64, 0u) << "data must start on a 64-byte boundary";
}

TEST_F(ArrayIoTest, NpyWriterMatchesNumpyBytes) {
    // np.save of np.arange(6, dtype='<f4').reshape(2, 3) * 0.5 writes exactly this.
    const std::vector<float> x = {0.f, 0.5f, 1.f, 1.5f, 2.f, 2.5f};
    const std::string expected = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", bytes_of(x));
    ASSERT_EQ(expected.size(), 152u);
    ASSERT_TRUE(write_npy_f32(path("b.npy"), x.data(), 2, 3).ok());
    EXPECT_EQ(read_raw("b.npy"), expected);
    const std::vector<int64_t> labels = {4, -1, 7};
    ASSERT_TRUE(write_npy_i64(path("l.npy"), labels.data(), 3).ok());
    EXPECT_EQ(read_raw("l.npy"), npy_file("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", bytes_of(labels)));
}

TEST_F(ArrayIoTest, NpyOneDimensionalAndEmpty) {
    const std::vector<float> v = {1.f, 2.f, 3.f, 4.f};
    ASSERT_TRUE(write_npy_f32(path("v.npy"), v.data(), 4, -1).ok());
    absl::StatusOr<Matrix> m = read_npy_f32(path("v.npy"));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->rows, 1);  // a 1-D float array is one vector
    EXPECT_EQ(m->cols, 4);
    EXPECT_EQ(m->data, v);

    ASSERT_TRUE(write_npy_f32(path("e.npy"), nullptr, 0, 128).ok());
    absl::StatusOr<Matrix> e = read_npy_f32(path("e.npy"));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->rows, 0);
    EXPECT_EQ(e->cols, 128);
    EXPECT_TRUE(e->data.empty());
}

TEST_F(ArrayIoTest, NpyI64RoundTrip) {
    const std::vector<int64_t> a = {0, -1, int64_t{1} << 40, 5, 6, 7};
    ASSERT_TRUE(write_npy_i64(path("i.npy"), a.data(), 6).ok());
    absl::StatusOr<IntMatrix> m = read_npy_i64(path("i.npy"));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->rows, 6);
    EXPECT_EQ(m->cols, 1);
    EXPECT_EQ(m->data, a);
    ASSERT_TRUE(write_npy_i64(path("j.npy"), a.data(), 2, 3).ok());
    absl::StatusOr<IntMatrix> j = read_npy_i64(path("j.npy"));
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_EQ(j->rows, 2);
    EXPECT_EQ(j->cols, 3);
    EXPECT_EQ(j->data, a);
    absl::StatusOr<std::vector<int64_t>> labels = read_labels(path("i.npy"));
    ASSERT_TRUE(labels.ok()) << labels.status();
    EXPECT_EQ(*labels, a);
    expect_error(read_labels(path("j.npy")).status(), "one column");
}

TEST_F(ArrayIoTest, NpyFloat64ConvertsOnlyWhenAllowed) {
    const std::vector<double> v = {1.5, -2.25, 3.0, 1e-3};
    write_raw("d.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", bytes_of(v), 2));
    expect_error(read_npy_f32(path("d.npy")).status(), "'<f8'");
    absl::StatusOr<Matrix> m = read_npy_f32(path("d.npy"), /*allow_convert=*/true);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->rows, 2);
    EXPECT_EQ(m->cols, 2);
    for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(m->data[i], static_cast<float>(v[i]));
    absl::StatusOr<Matrix> via = read_matrix(path("d.npy"), true);
    ASSERT_TRUE(via.ok());
    EXPECT_EQ(via->data, m->data);
}

TEST_F(ArrayIoTest, NpyInt32WidensOnlyWhenAllowed) {
    const std::vector<int32_t> v = {7, -8};
    write_raw("i4.npy", npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }", bytes_of(v)));
    expect_error(read_npy_i64(path("i4.npy")).status(), "'<i4'");
    absl::StatusOr<IntMatrix> m = read_npy_i64(path("i4.npy"), true);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->data, (std::vector<int64_t>{7, -8}));
}

TEST_F(ArrayIoTest, NpyHeaderVariantsNumpyMayWrite) {
    // Version 3.0, double quotes, key order changed, no trailing comma.
    const std::vector<float> v = {1.f, 2.f};
    write_raw("v3.npy", npy_file("{\"shape\": (1, 2), \"fortran_order\": False, \"descr\": \"<f4\"}", bytes_of(v), 3));
    absl::StatusOr<Matrix> m = read_npy_f32(path("v3.npy"));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->data, v);
}

struct Corrupt {
    const char* name;
    std::string bytes;
    const char* fragment;
};

TEST_F(ArrayIoTest, NpyCorruptionGivesClearErrors) {
    const std::string good = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                      std::string(24, '\0'));
    std::string bad_magic = good;
    bad_magic[1] = 'X';
    std::string long_header = good;
    long_header[8] = '\xff';
    long_header[9] = '\xff';
    std::string bad_version = good;
    bad_version[6] = 9;
    const std::vector<Corrupt> cases = {
        {"empty", "", "truncated"},
        {"short", good.substr(0, 7), "truncated"},
        {"magic", bad_magic, "bad magic"},
        {"header_len", long_header, "truncated"},
        {"version", bad_version, "version 9"},
        {"data_short", good.substr(0, good.size() - 1), "truncated"},
        {"data_long", good + "x", "unexpected bytes"},
        {"fortran", npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", std::string(24, '\0')),
         "Fortran"},
        {"dtype", npy_file("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", std::string(24, '\0')),
         "'<i8'"},
        {"big_endian", npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", std::string(24, '\0')),
         "big-endian"},
        {"3d", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", std::string(24, '\0')),
         "3-d"},
        {"0d", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", std::string(4, '\0')), "0-d"},
        {"huge", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000000000), }", ""),
         "overflows"},
        {"big_not_there", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000, 1000), }", ""),
         "truncated"},
        {"negative", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }", ""), "shape"},
        {"no_shape", npy_file("{'descr': '<f4', 'fortran_order': False, }", ""), "lacks"},
        {"unknown_key", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", ""), "unknown"},
        {"not_dict", npy_file("descr = f4", ""), "'{'"},
        {"bad_bool", npy_file("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", std::string(4, '\0')),
         "fortran_order"},
    };
    for (const Corrupt& c : cases) {
        SCOPED_TRACE(c.name);
        write_raw("c.npy", c.bytes);
        expect_error(read_npy_f32(path("c.npy")).status(), c.fragment);
        expect_error(read_matrix(path("c.npy")).status(), c.fragment);
    }
}

TEST_F(ArrayIoTest, MissingFileAndNotAFile) {
    absl::Status st = read_npy_f32(path("nope.npy")).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
    expect_error(st, "no such file");
    expect_error(read_fvecs(path("nope.fvecs")).status(), "no such file");
    ASSERT_EQ(::mkdir(path("sub.npy").c_str(), 0755), 0);
    expect_error(read_npy_f32(path("sub.npy")).status(), "not a regular file");
    ::rmdir(path("sub.npy").c_str());
}

TEST_F(ArrayIoTest, FifoIsRefusedWithoutBlocking) {
    // open() of a FIFO blocks until a writer comes: the readers must refuse it before that.
    const std::vector<std::pair<std::string, std::function<absl::Status(const std::string&)>>> readers = {
        {"f.npy", [](const std::string& p) { return read_npy_f32(p).status(); }},
        {"i.npy", [](const std::string& p) { return read_npy_i64(p).status(); }},
        {"l.npy", [](const std::string& p) { return read_labels(p).status(); }},
        {"m.fvecs", [](const std::string& p) { return read_matrix(p).status(); }},
        {"v.ivecs", [](const std::string& p) { return read_ivecs(p).status(); }},
    };
    for (const auto& [name, read] : readers) {
        SCOPED_TRACE(name);
        const std::string fifo = path(name);
        ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
        auto reading = std::async(std::launch::async, [&, read = read] { return read(fifo); });
        if (reading.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
            // Release the blocked open(): a writer that closes at once gives the reader EOF.
            const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
            if (w >= 0) ::close(w);
            ADD_FAILURE() << "blocked on a FIFO";
        }
        expect_error(reading.get(), "not a regular file");
    }
}

TEST_F(ArrayIoTest, InputFileReportsAFileThatShrankWhileRead) {
    // Read, not mapped: a file cut short after open() gives an error on the bytes now missing.
    write_raw("s.bin", std::string(10000, 'x'));
    InputFile f;
    ASSERT_TRUE(f.open(path("s.bin")).ok());
    EXPECT_EQ(f.size(), 10000u);
    EXPECT_EQ(f.name(), path("s.bin"));
    ASSERT_EQ(::truncate(path("s.bin").c_str(), 100), 0);
    char buf[64];
    EXPECT_TRUE(f.read_at(0, buf, sizeof buf).ok());
    expect_error(f.read_at(5000, buf, sizeof buf), "shrank");
    expect_error(f.read_at(90, buf, sizeof buf), "shrank");

    InputFile dir;
    expect_error(dir.open(dir_), "not a regular file");
    InputFile missing;
    EXPECT_EQ(missing.open(path("missing")).code(), absl::StatusCode::kNotFound);
}

TEST_F(ArrayIoTest, NpyFromMemoryMatchesTheFileReader) {
    const std::vector<float> x = {0.f, 0.5f, 1.f, 1.5f, 2.f, 2.5f};
    const std::string f32 = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", bytes_of(x));
    const MemoryBytes a(reinterpret_cast<const uint8_t*>(f32.data()), f32.size(), "buffer a");
    absl::StatusOr<Matrix> m = read_npy_f32(a);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->rows, 2);
    EXPECT_EQ(m->data, x);
    const std::vector<int32_t> v = {7, -8};
    const std::string i4 = npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", bytes_of(v));
    const MemoryBytes b(reinterpret_cast<const uint8_t*>(i4.data()), i4.size(), "buffer b");
    expect_error(read_npy_i64(b).status(), "buffer b: dtype '<i4'");
    absl::StatusOr<IntMatrix> w = read_npy_i64(b, true);
    ASSERT_TRUE(w.ok()) << w.status();
    EXPECT_EQ(w->data, (std::vector<int64_t>{7, -8}));
    // A buffer cut anywhere is an error naming it, never a read past its end.
    for (size_t n = 0; n < f32.size(); ++n) {
        const MemoryBytes cut(reinterpret_cast<const uint8_t*>(f32.data()), n, "cut");
        expect_error(read_npy_f32(cut).status(), "cut: ");
    }
    char out[4];
    expect_error(a.read_at(f32.size() - 2, out, 4), "past the end");
    expect_error(a.read_at(uint64_t(-2), out, 4), "past the end");
}

TEST_F(ArrayIoTest, FvecsRoundTripOddSizes) {
    for (int64_t cols : {1, 3, 17}) {
        for (int64_t rows : {0, 1, 7}) {
            std::vector<float> x(rows * cols);
            for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.1f;
            ASSERT_TRUE(write_fvecs(path("x.fvecs"), x.data(), rows, cols).ok());
            absl::StatusOr<Matrix> m = read_matrix(path("x.fvecs"));
            ASSERT_TRUE(m.ok()) << m.status();
            EXPECT_EQ(m->rows, rows);
            EXPECT_EQ(m->cols, rows ? cols : 0);  // an empty file has no dimension
            EXPECT_EQ(m->data, x);
            EXPECT_EQ(read_raw("x.fvecs").size(), static_cast<size_t>(rows * (cols + 1) * 4));
        }
    }
}

TEST_F(ArrayIoTest, IvecsRoundTripAndRange) {
    const std::vector<int64_t> v = {3, -4, 2147483647, -2147483648LL};
    ASSERT_TRUE(write_ivecs(path("l.ivecs"), v.data(), 4, 1).ok());
    absl::StatusOr<IntMatrix> m = read_ivecs(path("l.ivecs"));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->rows, 4);
    EXPECT_EQ(m->cols, 1);
    EXPECT_EQ(m->data, v);
    absl::StatusOr<std::vector<int64_t>> labels = read_labels(path("l.ivecs"));
    ASSERT_TRUE(labels.ok());
    EXPECT_EQ(*labels, v);
    const std::vector<int64_t> big = {int64_t{1} << 31};
    expect_error(write_ivecs(path("big.ivecs"), big.data(), 1, 1), "int32");
    EXPECT_EQ(::access(path("big.ivecs").c_str(), F_OK), -1) << "a failed write must leave nothing";
}

TEST_F(ArrayIoTest, FvecsCorruptionGivesClearErrors) {
    std::vector<float> x(2 * 4, 1.f);
    ASSERT_TRUE(write_fvecs(path("g.fvecs"), x.data(), 2, 4).ok());
    const std::string good = read_raw("g.fvecs");
    auto with_int = [](std::string s, size_t at, int32_t v) {
        std::memcpy(s.data() + at, &v, 4);
        return s;
    };
    const std::vector<Corrupt> cases = {
        {"short", good.substr(0, 3), "truncated"},
        {"truncated_row", good.substr(0, good.size() - 2), "not a multiple"},
        {"mixed_dims", good + with_int(std::string(16, '\0'), 0, 3), "not a multiple"},
        {"row_dim", with_int(good, 20, 5), "row 1 has dimension 5"},
        {"zero_dim", with_int(good, 0, 0), "dimension 0"},
        {"negative_dim", with_int(good, 0, -7), "dimension -7"},
        {"huge_dim", with_int(good, 0, 1 << 30), "truncated"},
    };
    for (const Corrupt& c : cases) {
        SCOPED_TRACE(c.name);
        write_raw("c.fvecs", c.bytes);
        expect_error(read_fvecs(path("c.fvecs")).status(), c.fragment);
    }
    expect_error(write_fvecs(path("z.fvecs"), x.data(), 2, 0), "cols");
}

TEST_F(ArrayIoTest, ReadMatrixDispatch) {
    std::vector<float> x = {1.f, 2.f};
    ASSERT_TRUE(write_npy_f32(path("UPPER.NPY"), x.data(), 1, 2).ok());
    absl::StatusOr<Matrix> m = read_matrix(path("UPPER.NPY"));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->data, x);
    write_raw("x.txt", "1 2\n");
    expect_error(read_matrix(path("x.txt")).status(), "unknown matrix format");
    expect_error(read_matrix(path("noext")).status(), "unknown matrix format");
    expect_error(read_labels(path("x.txt")).status(), "unknown label format");
}

TEST_F(ArrayIoTest, AtomicWriteReplacesAndLeavesNoTemporaries) {
    ASSERT_TRUE(atomic_write_file(path("f.bin"), "first").ok());
    EXPECT_EQ(read_raw("f.bin"), "first");
    ASSERT_TRUE(atomic_write_file(path("f.bin"), std::string("sec\0nd", 6)).ok());
    EXPECT_EQ(read_raw("f.bin"), std::string("sec\0nd", 6));
    EXPECT_EQ(list_dir(), std::vector<std::string>{"f.bin"});

    expect_error(atomic_write_file(path("no/such/dir/f.bin"), "x"), "cannot create");
    expect_error(atomic_write_file("", "x"), "empty");
    {
        AtomicFile f;
        ASSERT_TRUE(f.open(path("abandoned.bin")).ok());
        ASSERT_TRUE(f.write("partial", 7).ok());
        // destroyed without commit()
    }
    EXPECT_EQ(list_dir(), std::vector<std::string>{"f.bin"});
    AtomicFile spent;
    EXPECT_FALSE(spent.write("x", 1).ok());
    EXPECT_FALSE(spent.commit().ok());
}

TEST_F(ArrayIoTest, WrittenFilesArePrivateWhateverTheUmask) {
    // Files hold templates, keys and centroids: owner read/write only, even under umask 000.
    const mode_t old = ::umask(0);
    const float x[2] = {1.f, 2.f};
    ASSERT_TRUE(atomic_write_file(path("a.bin"), "x").ok());
    ASSERT_TRUE(write_npy_f32(path("a.npy"), x, 1, 2).ok());
    ASSERT_TRUE(write_fvecs(path("a.fvecs"), x, 1, 2).ok());
    ::umask(old);
    for (const char* name : {"a.bin", "a.npy", "a.fvecs"}) {
        struct stat st;
        ASSERT_EQ(::stat(path(name).c_str(), &st), 0) << name;
        EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
        ::unlink(path(name).c_str());
    }
}

TEST_F(ArrayIoTest, SpecialFilesAndLinksAreNotReplaced) {
    ASSERT_TRUE(atomic_write_file(path("real"), "keep").ok());
    ASSERT_EQ(::symlink(path("real").c_str(), path("link").c_str()), 0);
    expect_error(atomic_write_file(path("link"), "new"), "link: is a symbolic link");
    EXPECT_EQ(read_raw("real"), "keep");
    ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
    expect_error(atomic_write_file(path("fifo"), "new"), "fifo: is not a regular file");
    expect_error(atomic_write_file("/dev/null", "new"), "/dev/null: is not a regular file");
    EXPECT_TRUE(check_output_target(path("absent")).ok());
    for (const char* name : {"real", "link", "fifo"}) ::unlink(path(name).c_str());
    EXPECT_TRUE(list_dir().empty());
}

TEST_F(ArrayIoTest, ReadWholeFileIsBounded) {
    ASSERT_TRUE(atomic_write_file(path("ten.bin"), "0123456789").ok());
    auto all = read_whole_file(path("ten.bin"), 10);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(*all, "0123456789");
    expect_error(read_whole_file(path("ten.bin"), 9).status(), "file of 10 bytes is over the limit of 9");
    EXPECT_TRUE(absl::IsNotFound(read_whole_file(path("none.bin"), 9).status()));
    ::unlink(path("ten.bin").c_str());
}

TEST(Digest, Sha256KnownVectors) {
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),  // two blocks
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(sha256_hex(std::string(1000, 'a')), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST_F(ArrayIoTest, FailedRenameKeepsOldFile) {
    ASSERT_EQ(::mkdir(path("target").c_str(), 0755), 0);
    ASSERT_TRUE(atomic_write_file(path("target/inner"), "keep").ok());
    // A folder is never replaced: refused before anything is written, and left intact.
    expect_error(atomic_write_file(path("target"), "new"), "target: is a folder");
    std::ifstream f(path("target/inner"));
    std::string s;
    f >> s;
    EXPECT_EQ(s, "keep");
    ::unlink(path("target/inner").c_str());
    ::rmdir(path("target").c_str());
    EXPECT_TRUE(list_dir().empty());
}

}  // namespace
}  // namespace pslerp
