"""login failures: failed sign-ins behind the sign-in rate limit, per email and per client address

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 11:30:53.019426
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slotwise.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_failures',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures'))
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index('ix_login_failures_key_at', ['key', 'at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failures_key_at')

    op.drop_table('login_failures')
