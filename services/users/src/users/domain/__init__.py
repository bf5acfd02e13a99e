"""The users service's domain, one module per noun: what each thing is, its rules and its errors."""
