"""sessions and credential limits

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ui_sessions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('expires_at', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('revoked_at', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_hash')
    )
    op.create_index(op.f('ix_ui_sessions_token_id'), 'ui_sessions', ['token_id'], unique=False)
    op.create_index(op.f('ix_ui_sessions_expires_at'), 'ui_sessions', ['expires_at'], unique=False)
    op.create_table('credential_failures',
    sa.Column('key', sa.String(length=96), nullable=False),
    sa.Column('window_start', postgresql.TIMESTAMP(timezone=True), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('blocked_until', postgresql.TIMESTAMP(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index(op.f('ix_credential_failures_window_start'), 'credential_failures', ['window_start'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_credential_failures_window_start'), table_name='credential_failures')
    op.drop_table('credential_failures')
    op.drop_index(op.f('ix_ui_sessions_expires_at'), table_name='ui_sessions')
    op.drop_index(op.f('ix_ui_sessions_token_id'), table_name='ui_sessions')
    op.drop_table('ui_sessions')
