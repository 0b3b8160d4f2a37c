"""cmkd_edge.export: a trained student in, a verified bundle out (the training machine's side of deployment).

Modules, in pipeline order: ``student`` (checkpoint -> bundle with ``model.onnx``), ``onnx`` (torch ->
ONNX with the deploy preprocessing in the graph), ``parity`` (ONNX vs torch at batch 1 and N),
``samples`` (raw labelled deploy inputs read through the bundle's records), ``quantize/`` (the
fallback ladder, calibration, the accuracy gate, teacher-guided QAT), ``compile/`` (the compile
step and the re-gate of a compiled INT8 artifact), ``targets/`` (one module per backend: its
quantizer, compile hook and tool wrappers, named by the backend's declaration), ``bundle`` (the
writer side of a bundle), ``complexity`` (parameters and MACs of the exported graph, for the model
card). The numpy reference of the preprocessing, the input spec and the manifest as a table
(``describe``) are the runtime's contract (``cmkd_edge.runtime.contract``).

Imports point one way: export uses ``cmkd_edge`` (models, data, checkpoints) and the runtime, never the
CLI or the MFH experiments, and of the distillation code only its losses (``quantize/qat.py``
fine-tunes with the trainer's own KD loss, so QAT and distillation optimise one KD); none of those
imports export. Nothing is imported here, so ``import cmkd_edge.export`` stays cheap.
"""
