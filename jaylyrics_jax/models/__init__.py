"""The network: `CharLM` with its pointer/copy attention and fused LSTM."""
