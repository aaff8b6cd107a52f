"""The call protocol's timings: when workers accept and probe, when callers check liveness.

See docs/protocol.md for what each message means; these are the defaults of this
implementation (any value within the bounds the document gives is valid on the wire).
"""

#: a worker sends ``accepted`` for a call still running after this many seconds
ACCEPT_DELAY = 0.1
#: a caller that has heard nothing for this long checks that the instances that may hold
#: its call are alive (the bound on the window before acceptance)
ACCEPT_TIMEOUT = 0.75
#: a caller pings the instance that accepted its call this often
PING_INTERVAL = 0.5
#: a ping unanswered this long means the instance is frozen
PING_TIMEOUT = 0.75
#: a worker probes its caller once a call has run this long, and then this often
PROBE_AFTER = 1.0
PROBE_INTERVAL = 1.0
#: a worker asks for credit every this many chunks and has at most two windows unacknowledged
CREDIT_WINDOW = 32
#: a call that nobody accepted this long after it was sent, while every instance known to
#: the caller answers its ping, is held by an instance the caller does not know (a frozen
#: one whose registry entry expired): it is treated as lost
UNANSWERED_LIMIT = 2.0
#: how often an idempotent call is sent again after its instance was lost
MAX_RESENDS = 3
#: how long a caller that was cancelled before acceptance keeps listening for ``accepted``,
#: so that it can send the cancel to the instance that took the call
CANCEL_LINGER = 2.0
