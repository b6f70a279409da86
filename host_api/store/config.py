"""``capabilities.store`` in the operator's config: the store's bounds.

The database itself is the kernel's (``database:`` section), shared with the
kernel's own tables.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from arcana.errors import ConfigError


@dataclass(frozen=True)
class StoreConfig:
    # A document body, and a key-value value, as compact UTF-8 JSON.
    max_doc_bytes: int = 262_144
    max_value_bytes: int = 65_536
    # store_query: the page size when none is asked for, and the most allowed.
    default_page_size: int = 20
    max_page_size: int = 100
    # store_batch: operations in one transaction.
    max_batch_ops: int = 100

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigError(
                    f"config key 'capabilities.store.{f.name}' must be positive, got {getattr(self, f.name)}"
                )
        if self.default_page_size > self.max_page_size:
            raise ConfigError(
                f"config key 'capabilities.store.default_page_size' ({self.default_page_size}) "
                f"must not exceed max_page_size ({self.max_page_size})"
            )
