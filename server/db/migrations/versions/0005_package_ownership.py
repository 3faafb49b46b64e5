"""package ownership

A package belongs to the device that uploaded it: `packages` is keyed by `(device_id, id)` instead of
a fleet-wide `id`, and what refers to a package (jobs, records, drift events) names its device too.
Existing rows keep their ids.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFERRERS = ('jobs', 'records', 'drift_events')


def upgrade() -> None:
    for table in _REFERRERS:
        op.drop_constraint(f'{table}_package_id_fkey', table, type_='foreignkey')
    op.drop_constraint('packages_pkey', 'packages', type_='primary')
    op.create_primary_key('packages_pkey', 'packages', ['device_id', 'id'])
    op.drop_index('ix_packages_device_id', table_name='packages')  # the key's first column serves it
    op.add_column('jobs', sa.Column('device_id', sa.String(length=40), nullable=True))
    op.execute('UPDATE jobs SET device_id = packages.device_id FROM packages WHERE packages.id = jobs.package_id')
    op.alter_column('jobs', 'device_id', nullable=False)
    for table in _REFERRERS:
        op.create_foreign_key(f'{table}_device_id_package_id_fkey', table, 'packages',
                              ['device_id', 'package_id'], ['device_id', 'id'])


def downgrade() -> None:
    shared = op.get_bind().execute(
        sa.text('SELECT id FROM packages GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 5')
    ).scalars().all()
    if shared:  # a fleet-wide key cannot hold them; refuse rather than drop a device's package
        raise RuntimeError(f'cannot downgrade below 0005: package ids used by several devices: {", ".join(shared)}')
    for table in _REFERRERS:
        op.drop_constraint(f'{table}_device_id_package_id_fkey', table, type_='foreignkey')
    op.drop_column('jobs', 'device_id')
    op.create_index('ix_packages_device_id', 'packages', ['device_id'], unique=False)
    op.drop_constraint('packages_pkey', 'packages', type_='primary')
    op.create_primary_key('packages_pkey', 'packages', ['id'])
    for table in _REFERRERS:
        op.create_foreign_key(f'{table}_package_id_fkey', table, 'packages', ['package_id'], ['id'])
