"""recurrent.py: recurrent layers as time loops (unrolled if short), exact."""

from .cases import case_tests

CASES = {
    "rnn_two_layers_bidirectional": ("torch.nn.RNN(3, 16, num_layers=2, bidirectional=True, batch_first=True)",
                                     "lambda m, x: m(x)[0]", "torch.randn(2, 70, 3)"),  # > UNROLL_MAX_STEPS: a loop
    "rnn_relu_final_state": ("torch.nn.RNN(3, 16, nonlinearity='relu')", "lambda m, x: m(x)[1]", "torch.randn(9, 1, 3)"),  # short: unrolled
    "lstm_two_layers": ("torch.nn.LSTM(3, 16, num_layers=2, batch_first=True)",
                        "lambda m, x: m(x)[1][1]", "torch.randn(1, 80, 3)"),
    "gru": ("torch.nn.GRU(4, 8)", "lambda m, x: m(x)[0]", "torch.randn(66, 2, 4)"),
}


test_rewritten_graph_equals_pytorch, test_rewritten_model_compiles_and_matches_on_iree = case_tests(CASES)
