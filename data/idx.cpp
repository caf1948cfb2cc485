// IDX (MNIST format) reader: whole file into memory, gunzip when it starts with
// the gzip magic, then check the header against the data size so a truncated or
// mislabelled file fails here with its name rather than later as garbage.
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "data/memory_source.h"
#include "data/sources.h"

namespace lockstep {

namespace {

std::vector<unsigned char> read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw DataError(path + ": no such file (check the path)");
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0);
  std::vector<unsigned char> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw DataError(path + ": read error");
  return bytes;
}

std::vector<unsigned char> gunzip(const std::vector<unsigned char>& packed, const std::string& path) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw DataError(path + ": cannot start gzip decoder");
  // The gzip trailer holds the unpacked size mod 2^32: a good first guess, but
  // only a guess (a damaged file has garbage there), so never beyond deflate's
  // best ratio (about 1032:1).
  size_t guess = packed.size() * 4;
  if (packed.size() >= 4) {
    const unsigned char* t = packed.data() + packed.size() - 4;
    const size_t trailer = size_t(t[0]) | size_t(t[1]) << 8 | size_t(t[2]) << 16 | size_t(t[3]) << 24;
    guess = std::min(trailer, packed.size() * 1032);
  }
  std::vector<unsigned char> out(guess + 1);
  zs.next_in = const_cast<unsigned char*>(packed.data());
  zs.avail_in = static_cast<uInt>(packed.size());
  size_t produced = 0;
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    if (produced == out.size()) out.resize(out.size() * 2);
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - produced, 1u << 30));
    const size_t before = zs.avail_out;
    status = inflate(&zs, Z_NO_FLUSH);
    produced += before - zs.avail_out;
    if (status == Z_STREAM_END) break;
    // No progress possible with all input used: the stream was cut short.
    const bool truncated = status == Z_BUF_ERROR && zs.avail_in == 0;
    if (truncated || (status != Z_OK && status != Z_BUF_ERROR)) {
      std::string why = truncated || zs.msg == nullptr
                            ? "the compressed stream ends early (truncated file?)" : zs.msg;
      inflateEnd(&zs);
      throw DataError(path + ": gzip error: " + why);
    }
  }
  inflateEnd(&zs);
  out.resize(produced);
  return out;
}

uint32_t big_endian_u32(const unsigned char* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

std::string hex_bytes(const unsigned char* p, size_t n) {
  std::string text;
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, i ? " %02x" : "%02x", p[i]);
    text += buf;
  }
  return text;
}

HostArray parse_idx(const std::vector<unsigned char>& bytes, const std::string& path) {
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0)
    throw DataError(path + ": not an IDX file (bad magic " +
                    hex_bytes(bytes.data(), std::min<size_t>(bytes.size(), 4)) +
                    "; expected 00 00 <type> <rank>)");
  const unsigned type = bytes[2], rank = bytes[3];
  if (type != 0x08)
    throw DataError(path + ": IDX element type 0x" + hex_bytes(&bytes[2], 1) +
                    " is not supported (only unsigned byte, 0x08)");
  if (rank == 0) throw DataError(path + ": IDX header declares rank 0");
  const size_t header = 4 + 4 * size_t(rank);
  if (bytes.size() < header)
    throw DataError(path + ": truncated IDX header (" + std::to_string(bytes.size()) + " bytes)");
  HostArray array;
  array.type = ElementType::kUInt8;
  for (unsigned d = 0; d < rank; ++d) array.shape.push_back(big_endian_u32(&bytes[4 + 4 * d]));
  const uint64_t present = bytes.size() - header;
  // A damaged header can declare dims whose product overflows; sizes are int64
  // everywhere after this, so every partial product must fit one.
  int64_t expected = 1;
  for (int64_t d : array.shape)
    if (__builtin_mul_overflow(expected, d, &expected))
      throw DataError(path + ": IDX header declares impossible dimensions " + shape_string(array.shape));
  if (uint64_t(expected) != present)
    throw DataError(path + ": IDX header says " + shape_string(array.shape) + " = " +
                    std::to_string(expected) + " bytes of data but the file holds " +
                    std::to_string(present) + (present < uint64_t(expected) ? " (truncated)" : " (trailing bytes)"));
  array.bytes.assign(bytes.begin() + std::ptrdiff_t(header), bytes.end());
  return array;
}

}  // namespace

HostArray read_idx(const std::string& path) {
  std::vector<unsigned char> bytes = read_file_bytes(path);
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) bytes = gunzip(bytes, path);
  return parse_idx(bytes, path);
}

std::pair<HostArray, HostArray> read_idx_pair(const std::string& images, const std::string& labels) {
  HostArray x = read_idx(images);
  HostArray y = read_idx(labels);
  if (x.shape.size() < 2)
    throw DataError(images + ": images must have rank >= 2 (N, rows, cols), got " + shape_string(x.shape));
  if (y.shape.size() != 1)
    throw DataError(labels + ": labels must have rank 1 (N), got " + shape_string(y.shape));
  if (x.rows() != y.rows())
    throw DataError(images + " holds " + std::to_string(x.rows()) + " images but " + labels +
                    " holds " + std::to_string(y.rows()) + " labels");
  if (x.rows() == 0) throw DataError(images + ": zero images");
  return {std::move(x), std::move(y)};
}

std::shared_ptr<Source> open_idx(const std::string& images, const std::string& labels, float scale) {
  auto [x, y] = read_idx_pair(images, labels);
  std::vector<int32_t> label_values(y.bytes.begin(), y.bytes.end());
  DatasetInfo info;
  info.num_classes = *std::max_element(label_values.begin(), label_values.end()) + 1;
  info.description = images;
  return std::make_shared<MemorySource>(std::move(info), std::move(x), std::move(label_values),
                                        std::vector<float>{}, scale);
}

}  // namespace lockstep
