"""The torch backend of stemlab's metrics (CPU and CUDA tensors)."""
