"""Deploy-time graph optimizer: capture, graph passes, verification, the auto search, export.

The entry point is :func:`deepseek.optimize`; each public name lives in exactly one module:
``capture`` (the graph passes receive), ``passes`` (:class:`~deepseek.graph.passes.GraphPass`
and graph-editing helpers), ``match`` (recognising linears, adds, attention... in every
captured form), ``spec`` (what a call asks for), ``search`` (pipelines and the auto search),
``plan`` (what the optimizer decided), ``optimized`` (:class:`OptimizedModel`), ``export``
(``.pt2`` / ONNX artifacts) and ``export_trained`` (a trained run's model as one of them:
``deepseek.export`` and ``deepseek export``). The other modules are core's passes.
"""
