"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('devices',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('location', sa.String(length=256), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=True),
    sa.Column('hardware', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('enrolled_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('decommissioned_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('last_seen', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('update_state', sa.String(length=32), nullable=True),
    sa.Column('outbox_depth', sa.Integer(), nullable=True),
    sa.Column('evictions', sa.BigInteger(), nullable=True),
    sa.Column('health', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('desired_bundle_version', sa.String(length=64), nullable=True),
    sa.Column('pending_labels', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_hash')
    )
    op.create_index(op.f('ix_devices_last_seen'), 'devices', ['last_seen'], unique=False)
    op.create_index(op.f('ix_devices_model_version'), 'devices', ['model_version'], unique=False)
    op.create_index(op.f('ix_devices_status'), 'devices', ['status'], unique=False)
    op.create_index('ix_devices_tags', 'devices', ['tags'], unique=False, postgresql_using='gin')
    op.create_table('enrollment_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('tags', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('used_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('device_id', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('metrics',
    sa.Column('device_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('ts', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.PrimaryKeyConstraint('device_id', 'seq', 'name')
    )
    op.create_index('ix_metrics_device_name_ts', 'metrics', ['device_id', 'name', 'ts'], unique=False)
    op.create_table('packages',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('device_id', sa.String(length=40), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('object_key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
    sa.Column('received_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('imported_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('seq_first', sa.BigInteger(), nullable=True),
    sa.Column('seq_last', sa.BigInteger(), nullable=True),
    sa.Column('record_count', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_packages_device_id'), 'packages', ['device_id'], unique=False)
    op.create_table('drift_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('device_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('package_id', sa.String(length=128), nullable=False),
    sa.Column('ts', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('received_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('detector', sa.String(length=64), nullable=False),
    sa.Column('statistic', sa.Float(), nullable=True),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('label', sa.String(length=128), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('vector', postgresql.ARRAY(sa.Float()), nullable=True),
    sa.Column('sample_key', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_id', 'seq')
    )
    op.create_index(op.f('ix_drift_events_detector'), 'drift_events', ['detector'], unique=False)
    op.create_index('ix_drift_events_device_ts', 'drift_events', ['device_id', 'ts'], unique=False)
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('package_id', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='queued', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('run_after', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('locked_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_jobs_claim', 'jobs', ['state', 'run_after'], unique=False)
    op.create_index(op.f('ix_jobs_package_id'), 'jobs', ['package_id'], unique=False)
    op.create_table('records',
    sa.Column('device_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('package_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ts', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('priority', sa.Integer(), server_default='0', nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('object_key', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ),
    sa.PrimaryKeyConstraint('device_id', 'seq')
    )
    op.create_index('ix_records_device_kind_seq', 'records', ['device_id', 'kind', 'seq'], unique=False)
    op.create_index(op.f('ix_records_package_id'), 'records', ['package_id'], unique=False)
    op.create_table('drift_labels',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('drift_event_id', sa.BigInteger(), nullable=False),
    sa.Column('device_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('delivered_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['drift_event_id'], ['drift_events.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_drift_labels_drift_event_id'), 'drift_labels', ['drift_event_id'], unique=False)
    op.create_index('ix_drift_labels_pending', 'drift_labels', ['device_id'], unique=False,
                    postgresql_where=sa.text('delivered_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_drift_labels_pending', table_name='drift_labels',
                  postgresql_where=sa.text('delivered_at IS NULL'))
    op.drop_index(op.f('ix_drift_labels_drift_event_id'), table_name='drift_labels')
    op.drop_table('drift_labels')
    op.drop_index(op.f('ix_records_package_id'), table_name='records')
    op.drop_index('ix_records_device_kind_seq', table_name='records')
    op.drop_table('records')
    op.drop_index(op.f('ix_jobs_package_id'), table_name='jobs')
    op.drop_index('ix_jobs_claim', table_name='jobs')
    op.drop_table('jobs')
    op.drop_index('ix_drift_events_device_ts', table_name='drift_events')
    op.drop_index(op.f('ix_drift_events_detector'), table_name='drift_events')
    op.drop_table('drift_events')
    op.drop_index(op.f('ix_packages_device_id'), table_name='packages')
    op.drop_table('packages')
    op.drop_index('ix_metrics_device_name_ts', table_name='metrics')
    op.drop_table('metrics')
    op.drop_table('enrollment_tokens')
    op.drop_index('ix_devices_tags', table_name='devices', postgresql_using='gin')
    op.drop_index(op.f('ix_devices_status'), table_name='devices')
    op.drop_index(op.f('ix_devices_model_version'), table_name='devices')
    op.drop_index(op.f('ix_devices_last_seen'), table_name='devices')
    op.drop_table('devices')
    op.drop_table('api_tokens')
