// Chrome trace-event JSON for the training timeline: complete ("X") events with
// microsecond times, one pid per rank and one tid per replica, plus metadata
// events naming them. Times are from the steady clock, relative to the moment the
// tracer was made, so tracks of ranks on one node line up.
#include "src/trace.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "data/hdf5_util.h"

namespace lockstep {

TraceTrack::TraceTrack(std::string name, int tid, size_t capacity)
    : name_(std::move(name)), tid_(tid), capacity_(capacity) {
  spans_.reserve(capacity);
}

void TraceTrack::span(const char* name, TraceClock::time_point t0, TraceClock::time_point t1,
                      int64_t bytes) {
  if (spans_.size() >= capacity_) {
    ++dropped_;
    return;
  }
  const auto ns = [](TraceClock::duration d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  };
  spans_.push_back(TraceSpan{name, ns(t0.time_since_epoch()), ns(t1 - t0), step_, bytes});
}

std::string TraceTrack::json(int rank, TraceClock::time_point origin) const {
  const int64_t base =
      std::chrono::duration_cast<std::chrono::nanoseconds>(origin.time_since_epoch()).count();
  std::string out = nlohmann::json{{"ph", "M"}, {"name", "thread_name"}, {"pid", rank}, {"tid", tid_},
                                   {"args", {{"name", name_}}}}
                        .dump();
  out += ',';
  out += nlohmann::json{{"ph", "M"}, {"name", "thread_sort_index"}, {"pid", rank}, {"tid", tid_},
                        {"args", {{"sort_index", tid_}}}}
             .dump();
  char buf[512];
  const std::string backend = nlohmann::json(backend_).dump();
  for (const TraceSpan& s : spans_) {
    // Microseconds with ns precision; args only where they say something.
    std::string args = s.step >= 0 ? "\"step\":" + std::to_string(s.step) : "";
    if (s.bytes >= 0) {
      args += (args.empty() ? "\"bytes\":" : ",\"bytes\":") + std::to_string(s.bytes) + ",\"backend\":" + backend;
    }
    std::snprintf(buf, sizeof buf, ",{\"ph\":\"X\",\"name\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{%s}}",
                  s.name, rank, tid_, double(s.start_ns - base) / 1e3, double(s.dur_ns) / 1e3, args.c_str());
    out += buf;
  }
  return out;
}

Tracer::Tracer(int rank, int local_replicas, int64_t steps)
    : rank_(rank), steps_(steps), origin_(TraceClock::now()) {
  // A step makes about 5 spans plus one per bucket; evaluation, checksums and
  // checkpoints add a few per epoch. Room for 16 per step and 4096 more.
  const size_t capacity = size_t(steps) * 16 + 4096;
  for (int i = 0; i < local_replicas; ++i) {
    const std::string name = "rank " + std::to_string(rank) + " replica " + std::to_string(i);
    replicas_.emplace_back(name, i, capacity);
    reducers_.emplace_back(name + " bucket reducer", 1000 + i, capacity);
  }
}

std::string Tracer::json() const {
  std::string out = nlohmann::json{{"ph", "M"}, {"name", "process_name"}, {"pid", rank_}, {"tid", 0},
                                   {"args", {{"name", "rank " + std::to_string(rank_)}}}}
                        .dump();
  for (const auto& t : replicas_) {
    out += ',';
    out += t.json(rank_, origin_);
  }
  for (const auto& t : reducers_) {
    if (t.spans().empty()) continue;
    out += ',';
    out += t.json(rank_, origin_);
  }
  return out;
}

int64_t Tracer::dropped() const {
  int64_t n = 0;
  for (const auto& t : replicas_) n += t.dropped();
  for (const auto& t : reducers_) n += t.dropped();
  return n;
}

void write_trace_file(const std::string& path, const std::vector<std::string>& rank_events,
                      const std::string& metadata_json) {
  std::string text = "{\"displayTimeUnit\":\"ms\",\"metadata\":" + metadata_json + ",\"traceEvents\":[";
  for (size_t i = 0; i < rank_events.size(); ++i) {
    if (i) text += ',';
    text += rank_events[i];
  }
  text += "]}\n";
  AtomicOutput out(path, /*overwrite=*/true, "trace.json");
  out.write(text);
  out.commit();
}

}  // namespace lockstep
