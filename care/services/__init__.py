"""Write-side services: each function checks who may act, validates, and writes. They raise
`care.errors.DomainError` for a caller's mistake and never commit (the caller owns the
transaction)."""
