"""What the device and the server must agree on, and nothing else.

- `contract.package`: the sync package a device uploads (format, record kinds, ids, the tar layout);
- `contract.bundle`: the model bundle (its files, `bundle.json`, and the checks a bundle must pass);
- `contract.atomic`: atomic file writes, for state that must survive power loss at any instant;
- `contract.errors`: the errors these raise.

Standard library only: both sides import it, and it imports neither side.
"""
