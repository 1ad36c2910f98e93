"""Built-in init methods, one module each; `registry.registered_methods()` imports them all."""
