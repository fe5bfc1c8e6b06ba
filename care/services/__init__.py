"""Write-side services: each function checks who may act, validates, and writes. They raise
`care.errors.DomainError` for a caller's mistake and never commit (the caller owns the
transaction)."""

# "Not given" in an update: the field keeps its value (None means "clear it").
UNSET: object = object()
