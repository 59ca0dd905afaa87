"""Tools beside the worker: the local broker, the demo, and the topic and alert command lines.

Nothing in the worker (``streams``) imports from here; the tools use the worker's settings
and Kafka client configuration.
"""
