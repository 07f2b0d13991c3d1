"""One module per tool, each exposing ``open_harness()``: a started fake and its adapter."""
