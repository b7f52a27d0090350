"""Model export: HF -> GGUF + mmproj, segmentation models -> ONNX, ONNX -> TensorRT.

Never imported by the runtime."""
