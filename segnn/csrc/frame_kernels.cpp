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
// Frame parts (segnn/o3/edge_frame.py): part 0 [rows, K0] holds m = 0; part k >= 1
// [2, rows, Kk] holds m = -k (first) and +k. The rotations D^l ([pairs, d', 2l + 1], d' >= 2l + 1
// rows in frame order m = 0, -1, +1, -2, +2, ...; rows past 2l + 1 are padding) map e3nn's
// components to frame rows.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace {

constexpr int64_t kColumns = 4;  // the table's column_0 .. column_kmax start here

// Frame parts as raw pointers: part_row(row, r) is where frame row r (0 = m 0, 2k - 1 = -k,
// 2k = +k) of feature row `row` starts.
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

template <typename T>
void gather_impl(const at::Tensor& h, const at::Tensor& scalars, const at::Tensor& receivers,
                 const at::Tensor& senders, const std::vector<at::Tensor>& rotation_list,
                 const at::Tensor& table, const std::vector<at::Tensor>& out) {
  const int64_t pairs = receivers.size(0), width = h.size(1), num_scalars = scalars.size(1);
  const int64_t blocks = table.size(0), entry_size = table.size(1);
  const T* features = h.data_ptr<T>();
  const T* edge_scalars = scalars.data_ptr<T>();
  const int64_t* receiver = receivers.data_ptr<int64_t>();
  const int64_t* sender = senders.data_ptr<int64_t>();
  const int64_t* entries = table.data_ptr<int64_t>();
  const Rotations<T> rotations(rotation_list);
  const FrameParts<T> parts(out, pairs);
  at::parallel_for(0, pairs, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> buffer(width);
    for (int64_t p = begin; p < end; ++p) {
      const T* rows[3] = {features + receiver[p] * width, features + sender[p] * width,
                          edge_scalars + p * num_scalars};
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t* entry = entries + b * entry_size;
        const T* x = rows[entry[0]] + entry[1];
        const int64_t mul = entry[2], l = entry[3];
        if (l == 0) {
          T* o = parts.at(p, 0, entry + kColumns);
          for (int64_t c = 0; c < mul; ++c) o[c] = x[c];
        } else {
          rotate_into(rotations.matrix(l, p), 2 * l + 1, T(1), x, mul, buffer.data(), parts, p,
                      entry + kColumns);
        }
      }
    }
  });
}

// The gradient of h: atom n sums, over the message rows e it receives (order/offsets), the
// receiver blocks (input 0) of pair e / 2 when e is even (n is that pair's receiver) and its
// sender blocks (input 1) when e is odd, rotated back by D^T.
template <typename T>
void gather_backward_impl(const std::vector<at::Tensor>& grads,
                          const std::vector<at::Tensor>& rotation_list, const at::Tensor& table,
                          const at::Tensor& order, const at::Tensor& offsets,
                          const at::Tensor& grad_h) {
  const int64_t atoms = grad_h.size(0), width = grad_h.size(1), pairs = grads[0].size(0);
  const int64_t blocks = table.size(0), entry_size = table.size(1);
  const int64_t* entries = table.data_ptr<int64_t>();
  const int64_t* sorted_rows = order.data_ptr<int64_t>();
  const int64_t* first = offsets.data_ptr<int64_t>();
  const Rotations<T> rotations(rotation_list);
  const FrameParts<T> parts(grads, pairs);
  T* out = grad_h.data_ptr<T>();
  at::parallel_for(0, atoms, 16, [&](int64_t begin, int64_t end) {
    std::vector<T> accumulator(width);  // component-major per block
    for (int64_t n = begin; n < end; ++n) {
      std::fill(accumulator.begin(), accumulator.end(), T(0));
      for (int64_t i = first[n]; i < first[n + 1]; ++i) {
        const int64_t e = sorted_rows[i], p = e / 2, input = e % 2;
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t* entry = entries + b * entry_size;
          if (entry[0] != input) continue;
          T* a = accumulator.data() + entry[1];
          const int64_t mul = entry[2], l = entry[3];
          if (l == 0) {
            const T* o = parts.at(p, 0, entry + kColumns);
            for (int64_t c = 0; c < mul; ++c) a[c] += o[c];
          } else {
            rotate_back_add(rotations.matrix(l, p), 2 * l + 1, T(1), mul, parts, p,
                            entry + kColumns, a);
          }
        }
      }
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t* entry = entries + b * entry_size;
        if (entry[0] != 0) continue;  // input 1 has the same blocks at the same offsets
        component_major_to_channel_major(accumulator.data() + entry[1], entry[2],
                                         2 * entry[3] + 1, out + n * width + entry[1]);
      }
    }
  });
}

// Message row e belongs to pair e / 2; odd rows are the reverse direction, rotated back by
// (-1)^l D (segnn/o3/edge_pairs.py).
template <typename T>
void scatter_sum_impl(const std::vector<at::Tensor>& messages,
                      const std::vector<at::Tensor>& rotation_list, const at::Tensor& table,
                      const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& out) {
  const int64_t atoms = out.size(0), width = out.size(1), rows = messages[0].size(0);
  const int64_t blocks = table.size(0), entry_size = table.size(1);
  const int64_t* entries = table.data_ptr<int64_t>();
  const int64_t* sorted_rows = order.data_ptr<int64_t>();
  const int64_t* first = offsets.data_ptr<int64_t>();
  const Rotations<T> rotations(rotation_list);
  const FrameParts<T> parts(messages, rows);
  T* sums = out.data_ptr<T>();
  at::parallel_for(0, atoms, 16, [&](int64_t begin, int64_t end) {
    std::vector<T> accumulator(width);  // component-major per block
    for (int64_t n = begin; n < end; ++n) {
      std::fill(accumulator.begin(), accumulator.end(), T(0));
      for (int64_t i = first[n]; i < first[n + 1]; ++i) {
        const int64_t e = sorted_rows[i], p = e / 2;
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t* entry = entries + b * entry_size;
          T* a = accumulator.data() + entry[1];
          const int64_t mul = entry[2], l = entry[3];
          if (l == 0) {
            const T* y = parts.at(e, 0, entry + kColumns);
            for (int64_t c = 0; c < mul; ++c) a[c] += y[c];
          } else {
            const T sign = (e % 2 == 1 && l % 2 == 1) ? T(-1) : T(1);
            rotate_back_add(rotations.matrix(l, p), 2 * l + 1, sign, mul, parts, e,
                            entry + kColumns, a);
          }
        }
      }
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t* entry = entries + b * entry_size;
        component_major_to_channel_major(accumulator.data() + entry[1], entry[2],
                                         2 * entry[3] + 1, sums + n * width + entry[1]);
      }
    }
  });
}

template <typename T>
void scatter_sum_backward_impl(const at::Tensor& grad, const std::vector<at::Tensor>& rotation_list,
                               const at::Tensor& table, const at::Tensor& receivers,
                               const std::vector<at::Tensor>& grad_messages) {
  const int64_t width = grad.size(1), rows = receivers.size(0);
  const int64_t blocks = table.size(0), entry_size = table.size(1);
  const int64_t* entries = table.data_ptr<int64_t>();
  const int64_t* receiver = receivers.data_ptr<int64_t>();
  const Rotations<T> rotations(rotation_list);
  const FrameParts<T> parts(grad_messages, rows);
  const T* grads = grad.data_ptr<T>();
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    std::vector<T> buffer(width);
    for (int64_t e = begin; e < end; ++e) {
      const T* g = grads + receiver[e] * width;
      const int64_t p = e / 2;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t* entry = entries + b * entry_size;
        const T* gb = g + entry[1];
        const int64_t mul = entry[2], l = entry[3], d = 2 * l + 1;
        if (l == 0) {
          T* y = parts.at(e, 0, entry + kColumns);
          for (int64_t c = 0; c < mul; ++c) y[c] = gb[c];
        } else {
          const T sign = (e % 2 == 1 && l % 2 == 1) ? T(-1) : T(1);
          rotate_into(rotations.matrix(l, p), d, sign, gb, mul, buffer.data(), parts, e,
                      entry + kColumns);
        }
      }
    }
  });
}

std::vector<at::Tensor> to_vector(at::TensorList tensors) {
  return std::vector<at::Tensor>(tensors.begin(), tensors.end());
}

void check_table(const at::Tensor& table) {
  TORCH_CHECK(table.dim() == 2 && table.scalar_type() == at::kLong && table.is_contiguous(),
              "frame kernels: the block table must be a contiguous int64 matrix");
}

void gather(const at::Tensor& h, const at::Tensor& scalars, const at::Tensor& receivers,
            const at::Tensor& senders, at::TensorList rotations, const at::Tensor& table,
            at::TensorList out) {
  check_table(table);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "segnn_frame::gather", [&] {
    gather_impl<scalar_t>(h, scalars, receivers, senders, to_vector(rotations), table,
                          to_vector(out));
  });
}

void gather_backward(at::TensorList grads, at::TensorList rotations, const at::Tensor& table,
                     const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& grad_h) {
  check_table(table);
  AT_DISPATCH_FLOATING_TYPES(grad_h.scalar_type(), "segnn_frame::gather_backward", [&] {
    gather_backward_impl<scalar_t>(to_vector(grads), to_vector(rotations), table, order, offsets,
                                   grad_h);
  });
}

void scatter_sum(at::TensorList messages, at::TensorList rotations, const at::Tensor& table,
                 const at::Tensor& order, const at::Tensor& offsets, const at::Tensor& out) {
  check_table(table);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "segnn_frame::scatter_sum", [&] {
    scatter_sum_impl<scalar_t>(to_vector(messages), to_vector(rotations), table, order, offsets,
                               out);
  });
}

void scatter_sum_backward(const at::Tensor& grad, at::TensorList rotations,
                          const at::Tensor& table, const at::Tensor& receivers,
                          at::TensorList grad_messages) {
  check_table(table);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "segnn_frame::scatter_sum_backward", [&] {
    scatter_sum_backward_impl<scalar_t>(grad, to_vector(rotations), table, receivers,
                                        to_vector(grad_messages));
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
