"""cmkd_edge.export: a trained student in, a verified bundle out (the training machine's side of deployment).

Modules, in pipeline order: ``student`` (checkpoint -> bundle with ``model.onnx``), ``onnx`` (torch ->
ONNX with the deploy preprocessing in the graph), ``preprocess`` (the numpy reference of that
preprocessing and the input spec), ``parity`` (ONNX vs torch at batch 1 and N), ``samples`` (raw
labelled deploy inputs), ``quantize/`` (INT8/FP16 and the accuracy gate), ``compile/`` (TensorRT plans,
OpenVINO IR), ``bundle`` (the writer side of a bundle), ``inspect`` (a manifest as a table).

Imports point one way: export uses ``cmkd_edge`` (models, data, checkpoints) and the runtime, never the
distillation code or the CLI, and neither of those imports export. Nothing is imported here, so
``import cmkd_edge.export`` stays cheap.
"""
