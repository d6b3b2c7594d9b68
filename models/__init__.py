"""finsent's model room: label sets, data, the multi-task model, training, evaluation,
export (ONNX, TensorRT) and the runtime that scores a batch of texts.

Two rooms in one package (models/README.md): serving (artifact, runtime, tensorrt, explain,
entity_scores, hotswap, predict_file) loads a built artifact and scores; training (train,
training, distill, teacher, feedback, export, evaluate, entity_sentiment) builds one. Serving
never imports training. Knows nothing about Kafka, Postgres or HTTP. The runtime
(`models.runtime`) imports neither torch nor transformers on its ONNX Runtime path.
"""
