"""quantity changes: the add-on add/remove log behind the hourly rate limit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slotwise.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('quantity_changes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_quantity_changes_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quantity_changes'))
    )
    with op.batch_alter_table('quantity_changes', schema=None) as batch_op:
        batch_op.create_index('ix_quantity_changes_org_at', ['org_id', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('quantity_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_quantity_changes_org_at')

    op.drop_table('quantity_changes')
