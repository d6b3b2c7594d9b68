"""finsent's model room: label sets, data, the multi-task model, training, evaluation,
export (ONNX, TensorRT) and the runtime that scores a batch of texts.

Knows nothing about Kafka, Postgres or HTTP. The runtime (`models.runtime`) imports neither
torch nor transformers on its ONNX Runtime path.
"""
