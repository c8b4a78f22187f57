"""The strategies tradesim ships. Each registers itself in the entry-point group
`tradesim.strategies` (setup.cfg), the way a plug-in from another package does; `tradesim/` never
imports this package (tradesim.plugins finds them)."""
