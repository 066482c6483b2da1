"""The on-device agent: measures ONNX models with onnxruntime. Imports neither torch nor `ofa`."""

from importlib import metadata

try:
    __version__ = metadata.version("ofa-fleet")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
