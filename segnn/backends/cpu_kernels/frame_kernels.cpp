// CPU kernels for the paired edge-frame messages (segnn/o3/frame_kernels.py): the gather of
// both ends of every edge pair rotated into its frame, and the messages rotated back and summed
// per receiving atom, each with its backward. They do in one pass over the pairs (atoms) what
// index_select, the batched rotations, split, cat and scatter do in several. Sums over atoms
// run atom by atom over the message rows sorted by receiver (no two threads write one row).
//
// A *block table* ([blocks, 4 + kmax + 1], int64) describes feature rows block by block:
//   (input, offset, mul, l, column_0, ..., column_kmax)
// input: which row the block is read from (gather: 0 = receiver h, 1 = sender h, 2 = the pair's
// edge scalars; scatter: unused), offset: its first column there (mul * (2l + 1) columns,
// e3nn's order: channel-major, components inside), column_k: its first column in frame part k.
// Frame parts (segnn/backends/edge_frame/frames.py): part 0 [rows, K0] holds m = 0; part k >= 1
// [2, rows, Kk] holds m = -k (first) and +k. The rotations D^l ([pairs, d', 2l + 1], d' >= 2l + 1
// rows in frame order m = 0, -1, +1, -2, +2, ...; rows past 2l + 1 are padding) map e3nn's
// components to frame rows.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kColumns = 4;  // the table's column_0 .. column_kmax start here

// Frame parts as raw pointers: at(row, r, columns) is where a block (its first column in each
// part: columns[k]) starts in frame row r (0: m = 0; 2k - 1, 2k: m = -k, +k) of feature row `row`.
template <typename T>
struct FrameParts {
  std::vector<T*> data;
  std::vector<int64_t> width;
  int64_t rows;

  FrameParts(const std::vector<at::Tensor>& parts, int64_t num_rows) : rows(num_rows) {
    for (const auto& part : parts) {
      data.push_back(part.data_ptr<T>());
      width.push_back(part.size(-1));
    }
  }

  T* at(int64_t row, int64_t frame_row, const int64_t* columns) const {
    if (frame_row == 0) return data[0] + row * width[0] + columns[0];
    const int64_t k = (frame_row + 1) / 2, sign = (frame_row - 1) % 2;
    return data[k] + (sign * rows + row) * width[k] + columns[k];
  }
};

// D^l of every pair as raw pointers: matrix(l, pair) is [d', 2l + 1], row-major.
template <typename T>
struct Rotations {
  std::vector<const T*> data;
  std::vector<int64_t> stride;

  explicit Rotations(const std::vector<at::Tensor>& rotations) {
    for (const auto& rotation : rotations) {
      data.push_back(rotation.data_ptr<T>());
      stride.push_back(rotation.size(1) * rotation.size(2));
    }
  }

  const T* matrix(int64_t l, int64_t pair) const { return data[l - 1] + pair * stride[l - 1]; }
};

// out_r[c] = sign sum_j D[r, j] x[c d + j], r < d: one block of mul channels into the frame.
// `buffer` (mul * d) holds x component-major, so that every inner loop runs over channels.
template <typename T>
inline void rotate_into(const T* D, int64_t d, T sign, const T* x, int64_t mul, T* buffer,
                        const FrameParts<T>& parts, int64_t row, const int64_t* columns) {
  for (int64_t c = 0; c < mul; ++c)
    for (int64_t j = 0; j < d; ++j) buffer[j * mul + c] = x[c * d + j];
  for (int64_t r = 0; r < d; ++r) {
    T* out = parts.at(row, r, columns);
    const T* Dr = D + r * d;
    const T w0 = sign * Dr[0];
    for (int64_t c = 0; c < mul; ++c) out[c] = w0 * buffer[c];
    for (int64_t j = 1; j < d; ++j) {
      const T w = sign * Dr[j];
      const T* b = buffer + j * mul;
      for (int64_t c = 0; c < mul; ++c) out[c] += w * b[c];
    }
  }
}

// accumulator[j mul + c] += sign sum_r D[r, j] y_r[c]: one block rotated back (D^T),
// component-major.
template <typename T>
inline void rotate_back_add(const T* D, int64_t d, T sign, int64_t mul, const FrameParts<T>& parts,
                            int64_t row, const int64_t* columns, T* accumulator) {
  for (int64_t r = 0; r < d; ++r) {
    const T* y = parts.at(row, r, columns);
    for (int64_t j = 0; j < d; ++j) {
      const T w = sign * D[r * d + j];
      T* a = accumulator + j * mul;
      for (int64_t c = 0; c < mul; ++c) a[c] += w * y[c];
    }
  }
}

template <typename T>
inline void component_major_to_channel_major(const T* from, int64_t mul, int64_t d, T* to) {
  for (int64_t c = 0; c < mul; ++c)
    for (int64_t j = 0; j < d; ++j) to[c * d + j] = from[j * mul + c];
}

// Row by row, every block of the row's inputs rotated into the frame, into frame row `row`.
// `inputs(row, pointers)` sets the row's input rows (indexed by the table's input column).
// Rows belong to pair row / rows_per_pair; with two rows per pair (both directions, as the
// messages) the odd row is the reverse direction, rotated by (-1)^l D (segnn/backends/edge_frame/pairs.py).
template <typename T, typename Inputs>
void rotate_rows_into_frame(int64_t rows, int64_t rows_per_pair, int64_t width,
                            const at::Tensor& table, const Rotations<T>& rotations,
                            const FrameParts<T>& parts, Inputs inputs) {
  const int64_t blocks = table.size(0), entry_size = table.size(1);
  const int64_t* entries = table.data_ptr<int64_t>();
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> buffer(width);
    const T* pointers[3];
    for (int64_t row = begin; row < end; ++row) {
      inputs(row, pointers);
      const bool reverse = rows_per_pair == 2 && row % 2 == 1;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t* entry = entries + b * entry_size;
        const T* x = pointers[entry[0]] + entry[1];
        const int64_t mul = entry[2], l = entry[3];
        if (l == 0) {
          T* o = parts.at(row, 0, entry + kColumns);
          for (int64_t c = 0; c < mul; ++c) o[c] = x[c];
        } else {
          const T sign = (reverse && l % 2 == 1) ? T(-1) : T(1);
          rotate_into(rotations.matrix(l, row / rows_per_pair), 2 * l + 1, sign, x, mul,
                      buffer.data(), parts, row, entry + kColumns);
        }
      }
    }
  });
}

template <typename T>
void gather_impl(const at::Tensor& h, const at::Tensor& scalars, const at::Tensor& receivers,
                 const at::Tensor& senders, const std::vector<at::Tensor>& rotations,
                 const at::Tensor& table, const std::vector<at::Tensor>& out) {
  const int64_t pairs = receivers.size(0), width = h.size(1), num_scalars = scalars.size(1);
  const T* features = h.data_ptr<T>();
  const T* edge_scalars = scalars.data_ptr<T>();
  const int64_t* receiver = receivers.data_ptr<int64_t>();
  const int64_t* sender = senders.data_ptr<int64_t>();
  rotate_rows_into_frame<T>(pairs, 1, width, table, Rotations<T>(rotations),
                            FrameParts<T>(out, pairs), [&](int64_t p, const T** pointers) {
                              pointers[0] = features + receiver[p] * width;
                              pointers[1] = features + sender[p] * width;
                              pointers[2] = edge_scalars + p * num_scalars;
                            });
}

// The messages' sum backward: each message row gets its receiver's gradient, rotated into the
// message's frame.
template <typename T>
void scatter_sum_backward_impl(const at::Tensor& grad, const std::vector<at::Tensor>& rotations,
                               const at::Tensor& receivers, const at::Tensor& table,
                               const std::vector<at::Tensor>& grad_messages) {
  const int64_t width = grad.size(1), rows = receivers.size(0);
  const T* grads = grad.data_ptr<T>();
  const int64_t* receiver = receivers.data_ptr<int64_t>();
  rotate_rows_into_frame<T>(rows, 2, width, table, Rotations<T>(rotations),
                            FrameParts<T>(grad_messages, rows),
                            [&](int64_t e, const T** pointers) {
                              pointers[0] = grads + receiver[e] * width;
                            });
}

// Per atom n, the sum over the message rows e it receives (order/offsets) of frame features
// rotated back by D^T, into out[n] (channel-major, as e3nn). Two uses:
// * the messages' sum (by_pair false): frame row e, every block; odd rows are the reverse
//   direction of pair e / 2, rotated back by (-1)^l D (segnn/backends/edge_frame/pairs.py);
// * the gather's gradient (by_pair true): frame row e / 2 of the pair, whose receiver blocks
//   (input 0) belong to n when e is even and whose sender blocks (input 1) when e is odd.
template <typename T>
void sum_per_atom(const std::vector<at::Tensor>& frame,
                  const std::vector<at::Tensor>& rotation_list, const at::Tensor& table, const at::Tensor& order, const at::Tensor& offsets,
                  const at::Tensor& out, bool by_pair) {
  const int64_t atoms = out.size(0), width = out.size(1), rows = frame[0].size(0);
  const int64_t blocks = table.size(0), entry_size = table.size(1);
  const int64_t* entries = table.data_ptr<int64_t>();
  const int64_t* sorted_rows = order.data_ptr<int64_t>();
  const int64_t* first = offsets.data_ptr<int64_t>();
  const Rotations<T> rotations(rotation_list);
  const FrameParts<T> parts(frame, rows);
  T* sums = out.data_ptr<T>();
  at::parallel_for(0, atoms, 16, [&](int64_t begin, int64_t end) {
    std::vector<T> accumulator(width);  // component-major per block
    for (int64_t n = begin; n < end; ++n) {
      std::fill(accumulator.begin(), accumulator.end(), T(0));
      for (int64_t i = first[n]; i < first[n + 1]; ++i) {
        const int64_t e = sorted_rows[i], p = e / 2, row = by_pair ? p : e;
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t* entry = entries + b * entry_size;
          if (by_pair && entry[0] != e % 2) continue;
          T* a = accumulator.data() + entry[1];
          const int64_t mul = entry[2], l = entry[3];
          if (l == 0) {
            const T* y = parts.at(row, 0, entry + kColumns);
            for (int64_t c = 0; c < mul; ++c) a[c] += y[c];
          } else {
            const T sign = (!by_pair && e % 2 == 1 && l % 2 == 1) ? T(-1) : T(1);
            rotate_back_add(rotations.matrix(l, p), 2 * l + 1, sign, mul, parts, row,
                            entry + kColumns, a);
          }
        }
      }
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t* entry = entries + b * entry_size;
        if (entry[0] != 0) continue;  // input 1 has the same blocks at the same offsets
        component_major_to_channel_major(accumulator.data() + entry[1], entry[2],
                                         2 * entry[3] + 1, sums + n * width + entry[1]);
      }
    }
  });
}

std::vector<at::Tensor> to_vector(at::TensorList tensors) {
  return std::vector<at::Tensor>(tensors.begin(), tensors.end());
}

// Shapes, types and index ranges, checked before any raw pointer is used: a mismatch raises a
// clear error instead of reading or writing out of bounds.
void check_tensor(const at::Tensor& t, at::ScalarType type, int64_t dim, const char* what) {
  TORCH_CHECK(t.scalar_type() == type && t.dim() == dim && t.is_contiguous(),
              "segnn frame kernels: ", what, " must be a contiguous ", dim, "-d ",
              c10::toString(type), " tensor, got ", t.scalar_type(), " of shape ", t.sizes());
}

void check_indices(const at::Tensor& index, int64_t size, int64_t bound, const char* what) {
  check_tensor(index, at::kLong, 1, what);
  TORCH_CHECK(index.size(0) == size, "segnn frame kernels: ", what, " has ", index.size(0),
              " entries, expected ", size);
  const int64_t* values = index.data_ptr<int64_t>();
  for (int64_t i = 0; i < size; ++i)
    TORCH_CHECK(values[i] >= 0 && values[i] < bound, "segnn frame kernels: ", what, "[", i,
                "] = ", values[i], " is outside [0, ", bound, ")");
}

// The table against the widths of the rows it reads (input_widths) and the frame parts it fills
// (`rows` rows each), and the rotations (`pairs` of them per degree) against its degrees.
void check_layout(const at::Tensor& table, const std::vector<int64_t>& input_widths,
                  const std::vector<at::Tensor>& parts, int64_t rows, at::ScalarType type,
                  const std::vector<at::Tensor>& rotations, int64_t pairs) {
  check_tensor(table, at::kLong, 2, "the block table");
  const int64_t num_parts = parts.size();
  TORCH_CHECK(num_parts >= 1 && table.size(1) == kColumns + num_parts,
              "segnn frame kernels: a table with ", table.size(1), " columns for ", num_parts,
              " frame parts");
  for (int64_t k = 0; k < num_parts; ++k) {
    check_tensor(parts[k], type, k == 0 ? 2 : 3, "a frame part");
    TORCH_CHECK(parts[k].size(-2) == rows && (k == 0 || parts[k].size(0) == 2),
                "segnn frame kernels: frame part ", k, " has shape ", parts[k].sizes(),
                ", expected ", k == 0 ? "[" : "[2, ", rows, ", K]");
  }
  for (size_t l = 1; l <= rotations.size(); ++l) {
    const auto& rotation = rotations[l - 1];
    check_tensor(rotation, type, 3, "a rotation");
    TORCH_CHECK(rotation.size(0) == pairs && rotation.size(1) >= 2 * int64_t(l) + 1 &&
                    rotation.size(2) == 2 * int64_t(l) + 1,
                "segnn frame kernels: D^", l, " has shape ", rotation.sizes(), ", expected [",
                pairs, ", >= ", 2 * l + 1, ", ", 2 * l + 1, "]");
  }
  const int64_t* entries = table.data_ptr<int64_t>();
  for (int64_t b = 0; b < table.size(0); ++b) {
    const int64_t* entry = entries + b * table.size(1);
    const int64_t input = entry[0], offset = entry[1], mul = entry[2], l = entry[3];
    TORCH_CHECK(input >= 0 && input < int64_t(input_widths.size()) && offset >= 0 && mul >= 0 &&
                    l >= 0 && l < num_parts && (l == 0 || l <= int64_t(rotations.size())) &&
                    offset + mul * (2 * l + 1) <= input_widths[input],
                "segnn frame kernels: block ", b, " of the table does not fit its input");
    for (int64_t k = 0; k <= l; ++k)
      TORCH_CHECK(entry[kColumns + k] >= 0 && entry[kColumns + k] + mul <= parts[k].size(-1),
                  "segnn frame kernels: block ", b, " does not fit frame part ", k);
  }
}

void check_sorted_rows(const at::Tensor& order, const at::Tensor& offsets, int64_t rows,
                       int64_t atoms) {
  check_indices(order, rows, rows, "the receiver-sorted rows");
  check_tensor(offsets, at::kLong, 1, "the atoms' first rows");
  TORCH_CHECK(offsets.size(0) == atoms + 1, "segnn frame kernels: ", offsets.size(0),
              " row offsets for ", atoms, " atoms");
  const int64_t* first = offsets.data_ptr<int64_t>();
  TORCH_CHECK(first[0] == 0 && first[atoms] == rows,
              "segnn frame kernels: row offsets must run from 0 to ", rows);
  for (int64_t n = 0; n < atoms; ++n)
    TORCH_CHECK(first[n] <= first[n + 1], "segnn frame kernels: row offsets must not decrease");
}

void gather(const at::Tensor& h, const at::Tensor& scalars, const at::Tensor& receivers,
            const at::Tensor& senders, at::TensorList rotations, const at::Tensor& table,
            at::TensorList out) {
  const int64_t pairs = receivers.numel();
  check_tensor(h, h.scalar_type(), 2, "h");
  check_tensor(scalars, h.scalar_type(), 2, "the edge scalars");
  TORCH_CHECK(scalars.size(0) == pairs, "segnn frame kernels: ", scalars.size(0),
              " rows of edge scalars for ", pairs, " pairs");
  check_indices(receivers, pairs, h.size(0), "receivers");
  check_indices(senders, pairs, h.size(0), "senders");
  const auto rotation_list = to_vector(rotations), parts = to_vector(out);
  check_layout(table, {h.size(1), h.size(1), scalars.size(1)}, parts, pairs, h.scalar_type(),
               rotation_list, pairs);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "segnn_frame::gather", [&] {
    gather_impl<scalar_t>(h, scalars, receivers, senders, rotation_list, table, parts);
  });
}

void gather_backward(at::TensorList grads, at::TensorList rotations, const at::Tensor& table,
                     const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& grad_h) {
  check_tensor(grad_h, grad_h.scalar_type(), 2, "the gradient of h");
  const int64_t pairs = grads.empty() ? 0 : grads[0].size(0);
  check_sorted_rows(order, offsets, 2 * pairs, grad_h.size(0));
  // the scalars' blocks (input 2) are skipped: any width will do
  const auto rotation_list = to_vector(rotations), parts = to_vector(grads);
  check_layout(table, {grad_h.size(1), grad_h.size(1), INT64_MAX}, parts, pairs,
               grad_h.scalar_type(), rotation_list, pairs);
  AT_DISPATCH_FLOATING_TYPES(grad_h.scalar_type(), "segnn_frame::gather_backward", [&] {
    sum_per_atom<scalar_t>(parts, rotation_list, table, order, offsets, grad_h,
                           /*by_pair=*/true);
  });
}

void scatter_sum(at::TensorList messages, at::TensorList rotations, const at::Tensor& table,
                 const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& out) {
  check_tensor(out, out.scalar_type(), 2, "the sums");
  const int64_t rows = messages.empty() ? 0 : messages[0].size(0);
  TORCH_CHECK(rows % 2 == 0, "segnn frame kernels: messages come in pairs, got ", rows, " rows");
  check_sorted_rows(order, offsets, rows, out.size(0));
  const auto rotation_list = to_vector(rotations), parts = to_vector(messages);
  check_layout(table, {out.size(1)}, parts, rows, out.scalar_type(), rotation_list, rows / 2);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "segnn_frame::scatter_sum", [&] {
    sum_per_atom<scalar_t>(parts, rotation_list, table, order, offsets, out, /*by_pair=*/false);
  });
}

void scatter_sum_backward(const at::Tensor& grad, at::TensorList rotations,
                          const at::Tensor& table, const at::Tensor& receivers,
                          at::TensorList grad_messages) {
  check_tensor(grad, grad.scalar_type(), 2, "the gradient of the sums");
  const int64_t rows = receivers.numel();
  TORCH_CHECK(rows % 2 == 0, "segnn frame kernels: messages come in pairs, got ", rows, " rows");
  check_indices(receivers, rows, grad.size(0), "receivers");
  const auto rotation_list = to_vector(rotations), parts = to_vector(grad_messages);
  check_layout(table, {grad.size(1)}, parts, rows, grad.scalar_type(), rotation_list, rows / 2);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "segnn_frame::scatter_sum_backward", [&] {
    scatter_sum_backward_impl<scalar_t>(grad, rotation_list, receivers, table, parts);
  });
}

}  // namespace

TORCH_LIBRARY(segnn_frame, m) {
  m.def(
      "gather(Tensor h, Tensor scalars, Tensor receivers, Tensor senders, Tensor[] rotations, "
      "Tensor table, Tensor(a!)[] out) -> ()");
  m.def(
      "gather_backward(Tensor[] grads, Tensor[] rotations, Tensor table, Tensor order, "
      "Tensor offsets, Tensor(a!) grad_h) -> ()");
  m.def(
      "scatter_sum(Tensor[] messages, Tensor[] rotations, Tensor table, Tensor order, "
      "Tensor offsets, Tensor(a!) out) -> ()");
  m.def(
      "scatter_sum_backward(Tensor grad, Tensor[] rotations, Tensor table, Tensor receivers, "
      "Tensor(a!)[] grad_messages) -> ()");
}

TORCH_LIBRARY_IMPL(segnn_frame, CPU, m) {
  m.impl("gather", &gather);
  m.impl("gather_backward", &gather_backward);
  m.impl("scatter_sum", &scatter_sum);
  m.impl("scatter_sum_backward", &scatter_sum_backward);
}
