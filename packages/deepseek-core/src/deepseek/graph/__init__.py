"""Deploy-time graph optimizer: capture, graph passes, verification, the auto search, export.

The entry point is :func:`deepseek.optimize`; each public name lives in exactly one module:
``capture`` (the graph passes receive), ``passes`` (:class:`~deepseek.graph.passes.GraphPass`
and graph-editing helpers), ``match`` (recognising linears, adds, attention... in every captured
form), ``plan`` (what the optimizer decided), ``optimized`` (:class:`OptimizedModel`),
``search`` (pipelines and the auto search) and ``export`` (``.pt2`` / ONNX artifacts).
"""
