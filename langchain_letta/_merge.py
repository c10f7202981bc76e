"""Merging chunk content as LangChain does, in linear time.

The one module that uses langchain-core's private ``merge_dicts`` / ``merge_lists``:
every case this module does not handle itself goes through them, so LangChain's
rules and errors stay LangChain's.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any, TypeGuard

from langchain_core.utils._merge import merge_dicts, merge_lists

TEXT_KEYS = {"text": "text", "reasoning": "reasoning"}
"""Block types whose deltas may be merged, with the key of their text."""


def continues(block: dict[str, Any], first: dict[str, Any]) -> bool:
    """Whether LangChain's merge of ``block`` into ``first`` would only append its text.

    So it is for a text or reasoning delta holding nothing but its type, its text
    and the index of ``first`` (a block of the same type): no ``extras``, no
    ``id``, nothing that ``merge_dicts`` would treat otherwise. Tool calls, their
    results and anything else never merge.
    """
    key = TEXT_KEYS.get(block.get("type", ""))
    index = block.get("index")
    return (
        key is not None
        and len(block) == 3
        and type(block.get(key)) is str
        and type(index) is int
        and first.get("index") == index
        and first.get("type") == block["type"]
        and type(first.get(key)) is str
    )


class MergedContent:
    """The content of many chunks merged as LangChain's ``merge_lists`` does, in linear time.

    LangChain merges a block into the first earlier block of the same ``index``
    whose ``id`` does not differ, through ``merge_dicts``: strings are
    concatenated (except ``type``, and ``id``-like keys when equal), dicts merged
    key by key. Merging chunk after chunk copies every growing string again at
    each delta; here the blocks are found through their index and a
    concatenated string is written to a buffer (:class:`_Text`), read once. Any
    other pair of values goes through ``merge_dicts`` itself, so rules and
    errors stay LangChain's. The blocks of the chunks are never modified.
    """

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._by_index: dict[int | str, list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, content: Iterable[Any]) -> None:
        """Merge one chunk's content (a list of blocks, as the builder makes)."""
        for item in content:
            if type(item) is dict and self._continued(item):
                continue
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not _merges_by_index(index):
                self._append(item)
                continue
            position = self._first_match(item, index)
            if position is None:
                self._append(item)
            elif item.get("type") == "non_standard" and "value" in item:
                # LangChain's special case, rare enough to be left to it whole
                merged = merge_lists([_plain(self._items[position])], [item])
                self._items[position] = merged[0] if merged else item
            else:
                target = self._items[position]
                if type(target) is not _Merging:
                    target = self._items[position] = _Merging(target)
                _merge_into(target, item, skip="type")

    def _continued(self, item: dict[str, Any]) -> bool:
        """Append ``item``'s text to the block it continues, if that is all merging it does.

        The common case, a text or reasoning delta after the second (see
        :func:`continues`), without the general walk of :meth:`add`.
        """
        kind = item.get("type")
        key = TEXT_KEYS.get(kind) if type(kind) is str else None
        if key is None or len(item) != 3:
            return False
        index, text = item.get("index"), item.get(key)
        if type(index) is not int or type(text) is not str:
            return False
        positions = self._by_index.get(index)
        if not positions:
            return False
        target = self._items[positions[0]]  # the first of its index: an item has no id
        current = target.get(key) if type(target) is _Merging else None
        if type(current) is not _Text:
            return False
        current.add(text)  # all that _merge_into does with it: type skipped, index the same
        return True

    def content(self) -> list[Any]:
        """The merged blocks, every string joined."""
        return [_plain(item) for item in self._items]

    def _append(self, item: Any) -> None:
        if isinstance(item, dict) and isinstance(item.get("index"), (int, str)):
            self._by_index.setdefault(item["index"], []).append(len(self._items))
        self._items.append(item)

    def _first_match(self, item: dict[str, Any], index: int | str) -> int | None:
        """Where LangChain merges ``item``: the first block of its index with no other id."""
        right = item.get("id")
        for position in self._by_index.get(index, ()):
            left = self._items[position].get("id")
            if left in (None, "") or right in (None, "") or left == right:
                return position
        return None


def _merges_by_index(index: object) -> TypeGuard[int | str]:
    """Whether LangChain merges a block with this ``index`` into an earlier one."""
    return isinstance(index, int) or (isinstance(index, str) and index.startswith("lc_"))


_SPECIAL_STRINGS = frozenset({"index", "id", "output_version", "model_provider"})
"""Keys whose strings ``merge_dicts`` may keep rather than concatenate: left to it."""


class _Merging(dict[str, Any]):
    """A copy of a block (or of a dict inside one) that later deltas are merged into."""


class _Text:
    """A string being concatenated: its pieces written to a buffer, read once at the end."""

    __slots__ = ("_buffer",)

    def __init__(self, first: str) -> None:
        self._buffer = io.StringIO(newline="")  # no newline translation: the text as sent
        self._buffer.write(first)

    def add(self, piece: str) -> None:
        self._buffer.write(piece)

    def value(self) -> str:
        return self._buffer.getvalue()


def _merge_into(target: _Merging, right: dict[str, Any], skip: str | None = None) -> None:
    """``merge_dicts(target, right)`` in place, strings concatenated through :class:`_Text`."""
    for key, value in right.items():
        if key == skip:
            continue
        current = target.get(key, _ABSENT)
        if current is _ABSENT or (value is not None and current is None):
            target[key] = value
        elif value is None:
            continue
        elif type(value) is str and key not in _SPECIAL_STRINGS and type(current) in _STRINGS:
            if type(current) is str:
                current = target[key] = _Text(current)
            current.add(value)
        elif type(value) is type(current) and type(value) in _SCALARS and value == current:
            continue  # an index again, a flag again: kept as is
        elif type(value) is dict and type(current) in _DICTS:
            if type(current) is dict:
                current = target[key] = _Merging(current)
            _merge_into(current, value)
        else:  # every other case, errors included, exactly as LangChain merges it
            target[key] = merge_dicts({key: _plain(current)}, {key: value})[key]


_ABSENT = object()
_STRINGS = (str, _Text)
_DICTS = (dict, _Merging)
_SCALARS = (int, bool, float)


def _plain(value: Any) -> Any:
    """A merged value as LangChain's merge would give it: strings joined, dicts plain."""
    if type(value) is _Text:
        return value.value()
    if type(value) is _Merging:
        return {key: _plain(item) for key, item in value.items()}
    return value
