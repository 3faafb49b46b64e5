"""registry (TUF metadata, bundles) and rollouts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bundles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('target_path', sa.String(length=300), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('length', sa.BigInteger(), nullable=False),
    sa.Column('object_key', sa.String(length=400), nullable=False),
    sa.Column('custom', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('manifest', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('targets_version', sa.Integer(), nullable=False),
    sa.Column('published_by', sa.String(length=128), nullable=False),
    sa.Column('published_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lineage', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model', 'version'),
    sa.UniqueConstraint('target_path')
    )
    op.create_index(op.f('ix_bundles_version'), 'bundles', ['version'], unique=False)
    op.create_table('tuf_metadata',
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('expires', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('role', 'version')
    )
    op.create_table('rollouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bundle_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('selector', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('waves', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('gates', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('wave_timeout_s', sa.Integer(), nullable=False),
    sa.Column('current_wave', sa.Integer(), server_default='0', nullable=False),
    sa.Column('wave_started_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('rolled_back', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['bundle_id'], ['bundles.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_rollouts_bundle_id'), 'rollouts', ['bundle_id'], unique=False)
    op.create_index(op.f('ix_rollouts_state'), 'rollouts', ['state'], unique=False)
    op.create_table('rollout_devices',
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.String(length=40), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('previous_version', sa.String(length=64), nullable=True),
    sa.Column('previous_model', sa.String(length=128), nullable=True),
    sa.Column('baseline_p95_ms', sa.Float(), nullable=True),
    sa.Column('assigned_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.Column('switched_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollouts.id'], ),
    sa.PrimaryKeyConstraint('rollout_id', 'device_id')
    )
    op.create_index('ix_rollout_devices_active', 'rollout_devices', ['device_id'], unique=True,
                    postgresql_where=sa.text('active'))
    op.create_table('rollout_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('at', postgresql.TIMESTAMP(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('wave', sa.Integer(), nullable=True),
    sa.Column('decision', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollouts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_rollout_events_rollout_id'), 'rollout_events', ['rollout_id'], unique=False)
    op.add_column('devices', sa.Column('desired_model', sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column('devices', 'desired_model')
    op.drop_index(op.f('ix_rollout_events_rollout_id'), table_name='rollout_events')
    op.drop_table('rollout_events')
    op.drop_index('ix_rollout_devices_active', table_name='rollout_devices', postgresql_where=sa.text('active'))
    op.drop_table('rollout_devices')
    op.drop_index(op.f('ix_rollouts_state'), table_name='rollouts')
    op.drop_index(op.f('ix_rollouts_bundle_id'), table_name='rollouts')
    op.drop_table('rollouts')
    op.drop_table('tuf_metadata')
    op.drop_index(op.f('ix_bundles_version'), table_name='bundles')
    op.drop_table('bundles')
