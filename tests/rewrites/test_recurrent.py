"""recurrent.py: recurrent layers as time loops (unrolled if short), exact."""

from .cases import case_tests

CASES = {
    "rnn_two_layers_bidirectional": ("torch.nn.RNN(3, 16, num_layers=2, bidirectional=True, batch_first=True)",
                                     "lambda m, x: m(x)[0]", "torch.randn(2, 130, 3)"),  # > UNROLL_MAX_STEPS: a loop
    "rnn_relu_final_state": ("torch.nn.RNN(3, 16, nonlinearity='relu')", "lambda m, x: m(x)[1]", "torch.randn(9, 1, 3)"),  # short: unrolled
    "lstm_two_layers": ("torch.nn.LSTM(3, 16, num_layers=2, batch_first=True)",
                        "lambda m, x: m(x)[1][1]", "torch.randn(1, 136, 3)"),  # a loop
    "gru": ("torch.nn.GRU(4, 8)", "lambda m, x: m(x)[0]", "torch.randn(132, 2, 4)"),  # a loop
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
