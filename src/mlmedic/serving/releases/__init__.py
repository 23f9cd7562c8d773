"""A release in the service (#24, #31): the host process that runs the candidate (``host``),
the worker's link to it (``link``), the supervisor's keeper of the host (``keeper``), and the
typed, versioned lines between them (``wire``)."""
