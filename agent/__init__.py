"""The on-device agent: measures ONNX models with onnxruntime. Imports neither torch nor `ofa`."""
