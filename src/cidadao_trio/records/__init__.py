"""What the server remembers besides streams: investigations, reports, session owners,
open chat turns and counters (``base.Records``), one implementation per kind of store."""
