#include "protocol/frame.h"

#include <cstring>

#include "maroon/assert.h"
#include "common/hash.h"

namespace maroon::protocol {

namespace {

uint32_t load_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

void store_u32(char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<char>(v >> (8 * i));
}

}  // namespace

DecodeResult decode_frame(std::string_view in, Frame& frame, size_t& consumed, Status* error) {
  if (in.size() < kFrameHeaderBytes) return DecodeResult::kNeedMore;
  const uint32_t length = load_u32(in.data());
  if (length == 0 || length > limits::message_bytes_max) {
    if (error != nullptr) {
      *error = Status(length == 0 ? Code::kInvalidArgument : Code::kTooLarge,
                      "frame length " + std::to_string(length) + " outside [1, " +
                          std::to_string(limits::message_bytes_max) + "]");
    }
    return DecodeResult::kError;
  }
  if (in.size() - kFrameHeaderBytes < length) return DecodeResult::kNeedMore;
  const std::string_view body = in.substr(kFrameHeaderBytes, length);
  if (checksum32(body) != load_u32(in.data() + 4)) {
    if (error != nullptr) *error = corruption("frame checksum mismatch");
    return DecodeResult::kError;
  }
  frame.type = static_cast<uint8_t>(body[0]);
  frame.payload = body.substr(1);
  consumed = kFrameHeaderBytes + length;
  return DecodeResult::kFrame;
}

size_t start_frame(FrameType type, std::string& out) {
  const size_t start = out.size();
  out.append(kFrameHeaderBytes, '\0');
  out.push_back(static_cast<char>(type));
  return start;
}

void finish_frame(size_t start, std::string& out) {
  MAROON_ASSERT(out.size() > start + kFrameHeaderBytes);
  const size_t length = out.size() - start - kFrameHeaderBytes;
  MAROON_ASSERT_MSG(length <= limits::message_bytes_max, "frame exceeds message_bytes_max");
  const std::string_view body(out.data() + start + kFrameHeaderBytes, length);
  store_u32(out.data() + start, static_cast<uint32_t>(length));
  store_u32(out.data() + start + 4, checksum32(body));
}

void encode_frame(uint8_t type, std::string_view payload, std::string& out) {
  MAROON_ASSERT(payload.size() <= kFramePayloadBytesMax);
  const size_t start = start_frame(static_cast<FrameType>(type), out);
  out.append(payload);
  finish_frame(start, out);
}

void encode_frame(FrameType type, std::string_view payload, std::string& out) {
  encode_frame(static_cast<uint8_t>(type), payload, out);
}

std::span<char> FrameDecoder::prepare(size_t min_bytes) {
  MAROON_ASSERT(min_bytes > 0);
  // Move the unreturned tail to the front once it is cheap relative to the
  // space it frees, so the buffer stays about one frame plus one read.
  if (begin_ > 0 &&
      (begin_ == end_ || begin_ >= buf_.size() / 2 || buf_.size() - end_ < min_bytes)) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() - end_ < min_bytes) buf_.resize(end_ + min_bytes);
  committed_limit_ = buf_.size();
  return {buf_.data() + end_, buf_.size() - end_};
}

void FrameDecoder::commit(size_t bytes) {
  MAROON_ASSERT(end_ + bytes <= committed_limit_);
  end_ += bytes;
}

void FrameDecoder::feed(std::string_view bytes) {
  if (bytes.empty()) return;
  std::span<char> space = prepare(bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  commit(bytes.size());
}

DecodeResult FrameDecoder::next(Frame& frame) {
  if (failed()) return DecodeResult::kError;
  size_t consumed = 0;
  const DecodeResult r =
      decode_frame(std::string_view(buf_.data() + begin_, end_ - begin_), frame, consumed, &error_);
  if (r == DecodeResult::kFrame) {
    begin_ += consumed;
    MAROON_ASSERT(begin_ <= end_);
  } else if (r == DecodeResult::kError) {
    MAROON_ASSERT(failed());
  }
  return r;
}

}  // namespace maroon::protocol
