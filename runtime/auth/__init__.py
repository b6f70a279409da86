"""Identity and auth, owned by the kernel: passwords, tokens, users, refresh families."""
