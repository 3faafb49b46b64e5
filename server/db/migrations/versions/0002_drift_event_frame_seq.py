"""drift event frame seq

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('drift_events', sa.Column('frame_seq', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column('drift_events', 'frame_seq')
