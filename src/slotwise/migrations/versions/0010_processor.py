"""a real card processor: the processor's customer per organization, payments waiting for the
customer's bank (SCA) on their open invoice with what completing them grants, and the processor's
webhook events stored once by their id (SPEC §12)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slotwise.models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('processor_customer_id', sa.String(length=64), nullable=True))
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('action_intent', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('purchase', sa.Text(), nullable=True))
    op.create_table('processor_events',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('object_id', sa.String(length=255), nullable=True),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('received_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('handled_at', slotwise.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processor_events'))
    )


def downgrade() -> None:
    op.drop_table('processor_events')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('purchase')
        batch_op.drop_column('action_intent')
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('processor_customer_id')
