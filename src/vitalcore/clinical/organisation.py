"""The organisation tree: hospitals, campuses, wards and beds (a store part).

Creating a node needs ``manage_organisation`` on its parent (a hospital on the global
scope). Moving a bed to another ward changes both wards' boundaries: it needs the
permission on both wards and is refused while a patient occupies the bed.
"""

from __future__ import annotations

from ..errors import UsageError
from .core import StoreCore
from .model import Permission, Resource, check_id, check_name

__all__ = ["OrganisationPart"]

_MANAGE = Permission.MANAGE_ORGANISATION


class OrganisationPart(StoreCore):
    """Hospitals, campuses, wards and beds."""

    def _create_node(self, actor: str, table: str, what: str, node_id: str, name: str,
                     parent_col: str | None, parent: Resource, at_us: int | None) -> None:
        check_id(node_id, what)
        check_name(name, f"{what} name")
        with self._operation(actor, f"create_{what}", parent,
                             at_us) as op:
            op.require(_MANAGE, parent)
            if op.tx.one(f"SELECT 1 FROM {table} WHERE id = ?", (node_id,)):
                raise UsageError(f"{what} {node_id!r} exists already")
            if parent_col is None:
                op.tx.execute(f"INSERT INTO {table} (id, name) VALUES (?, ?)", (node_id, name))
            else:
                op.tx.execute(f"INSERT INTO {table} (id, {parent_col}, "
                              f"{'label' if table == 'beds' else 'name'}) VALUES (?, ?, ?)",
                              (node_id, parent.id, name))
            op.detail = {what: node_id, "name": name}

    def create_hospital(self, actor: str, hospital_id: str, name: str,
                        at_us: int | None = None) -> None:
        """Create a hospital (``manage_organisation`` on the global scope)."""
        self._create_node(actor, "hospitals", "hospital", hospital_id, name, None,
                          Resource.everything(), at_us)

    def create_campus(self, actor: str, campus_id: str, hospital_id: str, name: str,
                      at_us: int | None = None) -> None:
        """Create a campus of a hospital (``manage_organisation`` on the hospital)."""
        self._create_node(actor, "campuses", "campus", campus_id, name, "hospital_id",
                          Resource.hospital(hospital_id), at_us)

    def create_ward(self, actor: str, ward_id: str, campus_id: str, name: str,
                    at_us: int | None = None) -> None:
        """Create a ward on a campus (``manage_organisation`` on the campus)."""
        self._create_node(actor, "wards", "ward", ward_id, name, "campus_id",
                          Resource.campus(campus_id), at_us)

    def create_bed(self, actor: str, bed_id: str, ward_id: str, label: str,
                   at_us: int | None = None) -> None:
        """Create a bed in a ward (``manage_organisation`` on the ward)."""
        self._create_node(actor, "beds", "bed", bed_id, label, "ward_id",
                          Resource.ward(ward_id), at_us)

    def move_bed(self, actor: str, bed_id: str, ward_id: str, at_us: int | None = None) -> None:
        """Move a bed to another ward (changes both wards' boundaries).

        Needs ``manage_organisation`` on the bed's ward and on ``ward_id``; refused while
        a patient occupies the bed (transfer the patient first).
        """
        check_id(bed_id, "bed")
        check_id(ward_id, "ward")
        with self._operation(actor, "move_bed", Resource.bed(bed_id), at_us) as op:
            tx = op.tx
            row = tx.one("SELECT ward_id FROM beds WHERE id = ?" + tx.for_update, (bed_id,))
            if row is None:
                raise UsageError(f"unknown bed {bed_id!r}")
            op.require(_MANAGE, Resource.ward(row[0]))
            op.require(_MANAGE, Resource.ward(ward_id))
            if tx.one("SELECT 1 FROM placements WHERE bed_id = ? AND end_us IS NULL", (bed_id,)):
                raise UsageError(f"bed {bed_id!r} is occupied: transfer the patient first")
            tx.execute("UPDATE beds SET ward_id = ? WHERE id = ?", (ward_id, bed_id))
            op.detail = {"bed": bed_id, "from_ward": row[0], "to_ward": ward_id}

    # -- reading (organisation data is not patient data: not audited) ---------------------
    def hospitals(self) -> list[tuple[str, str]]:
        """``(hospital_id, name)`` of every hospital, by id."""
        with self.db.transaction(write=False) as tx:
            return tx.all("SELECT id, name FROM hospitals ORDER BY id")

    def wards(self, hospital_id: str | None = None) -> list[tuple[str, str, str]]:
        """``(ward_id, campus_id, name)`` of every ward (of one hospital if given)."""
        sql = "SELECT w.id, w.campus_id, w.name FROM wards w JOIN campuses c ON c.id = w.campus_id"
        with self.db.transaction(write=False) as tx:
            if hospital_id is None:
                return tx.all(sql + " ORDER BY w.id")
            return tx.all(sql + " WHERE c.hospital_id = ? ORDER BY w.id", (hospital_id,))

    def beds(self, ward_id: str) -> list[tuple[str, str]]:
        """``(bed_id, label)`` of the beds of a ward now."""
        with self.db.transaction(write=False) as tx:
            return tx.all("SELECT id, label FROM beds WHERE ward_id = ? ORDER BY id", (ward_id,))
