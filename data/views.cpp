// The non-template views: rows of a Source as Examples, and the gather step
// that turns batches of row indices into contiguous float batches (the last
// stage before a batch reaches the replicas).
#include "data/views.h"

namespace lockstep {

SourceIterator::SourceIterator(std::shared_ptr<Source> source) : source_(std::move(source)) {
  if (!source_) throw DataError("from_source: no source given");
}

int64_t SourceIterator::size() const { return source_->info().size; }

void SourceIterator::on_start(int64_t) { i_ = 0; }

bool SourceIterator::produce(Example& out) {
  const DatasetInfo& info = source_->info();
  if (i_ >= info.size) return false;
  out.row = i_++;
  out.x.resize(size_t(info.feature_dim));
  out.target.resize(size_t(info.target_dim));
  source_->read(&out.row, 1, out.x.data(), info.num_classes > 0 ? &out.label : nullptr,
                info.target_dim > 0 ? out.target.data() : nullptr);
  return true;
}

int64_t SourceIterator::advance(int64_t n) {
  const int64_t k = std::min(n, source_->info().size - i_);
  i_ += k;
  return k;
}

IteratorPtr<Example> from_source(std::shared_ptr<Source> source) {
  return std::make_unique<SourceIterator>(std::move(source));
}

GatherIterator::GatherIterator(IteratorPtr<std::vector<int64_t>> child, std::shared_ptr<Source> source,
                               SliceFn slice)
    : child_(std::move(child)), source_(std::move(source)), slice_(std::move(slice)) {
  if (!source_) throw DataError("gather: no source given");
}

int64_t GatherIterator::size() const { return child_->size(); }

void GatherIterator::on_start(int64_t epoch) { child_->start(epoch); }

bool GatherIterator::produce(RowBatch& out) {
  if (!child_->next(indices_)) return false;
  const int64_t n = int64_t(indices_.size());
  auto [begin, end] = slice_ ? slice_(n) : std::pair<int64_t, int64_t>(0, n);
  if (begin < 0 || begin > end || end > n)
    throw DataError("gather: slice [" + std::to_string(begin) + ", " + std::to_string(end) +
                    ") does not fit a batch of " + std::to_string(n) + " rows");
  const DatasetInfo& info = source_->info();
  const int64_t rows = end - begin;
  out.global_rows = n;
  out.first_row = begin;
  out.rows = rows;
  // resize() keeps capacity: after the first full batch this allocates nothing.
  out.x.resize(size_t(rows * info.feature_dim));
  out.labels.resize(info.num_classes > 0 ? size_t(rows) : 0);
  out.targets.resize(size_t(rows * info.target_dim));
  if (rows > 0)
    source_->read(indices_.data() + begin, rows, out.x.data(),
                  info.num_classes > 0 ? out.labels.data() : nullptr,
                  info.target_dim > 0 ? out.targets.data() : nullptr);
  return true;
}

int64_t GatherIterator::advance(int64_t n) { return child_->skip(n); }

IteratorPtr<RowBatch> gather(IteratorPtr<std::vector<int64_t>> child, std::shared_ptr<Source> source,
                             SliceFn slice) {
  return std::make_unique<GatherIterator>(std::move(child), std::move(source), std::move(slice));
}

}  // namespace lockstep
