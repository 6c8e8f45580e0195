"""recurrent.py: recurrent layers as one dispatch (recurrent_kernel.py: up to MAX_HIDDEN units), or
wider as time loops (unrolled if short), exact."""

from .cases import case_tests

CASES = {
    "rnn_two_layers_bidirectional": ("torch.nn.RNN(3, 16, num_layers=2, bidirectional=True, batch_first=True, "
                                     "nonlinearity='relu')", "lambda m, x: m(x)[0]", "torch.randn(2, 130, 3)"),  # one reversed
    "lstm_two_layers": ("torch.nn.LSTM(3, 16, num_layers=2, batch_first=True)",
                        "lambda m, x: m(x)[1][1]", "torch.randn(1, 136, 3)"),
    "gru": ("torch.nn.GRU(4, 8)", "lambda m, x: m(x)[0]", "torch.randn(132, 2, 4)"),  # a batch of 2 in the kernel
    # wider than MAX_HIDDEN: IREE's own matmuls, as a time loop (> UNROLL_MAX_STEPS steps) or unrolled
    "lstm_wide_loop": ("torch.nn.LSTM(2, 72)", "lambda m, x: m(x)[0]", "torch.randn(130, 1, 2)"),
    "rnn_wide_unrolled_final_state": ("torch.nn.RNN(3, 72)", "lambda m, x: m(x)[1]", "torch.randn(9, 1, 3)"),
}


test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)

# cells, alone and stepped in the model's own Python loop (one op per step)
CELL_CASES = {
    "lstm_cell_in_a_loop": ("torch.nn.LSTMCell(3, 8)",   # the state carried from step to step
                            "lambda m, x: torch.stack([(s := m(x[t], s if t else None))[1] for t in range(len(x))])",
                            "torch.randn(6, 2, 3)"),
    "gru_cell_unbatched_no_bias": ("torch.nn.GRUCell(4, 8, bias=False)", "lambda m, x: m(x, torch.ones(8) * 0.5)",
                                   "torch.randn(4)"),
    "rnn_tanh_cell": ("torch.nn.RNNCell(3, 8)", "lambda m, x: m(x)", "torch.randn(2, 3)"),
    "rnn_relu_cell": ("torch.nn.RNNCell(3, 8, nonlinearity='relu')", "lambda m, x: m(x)", "torch.randn(2, 3)"),
}

test_cell_graph_equals_pytorch, test_cell_compiles_and_matches_on_iree = case_tests(CELL_CASES)
