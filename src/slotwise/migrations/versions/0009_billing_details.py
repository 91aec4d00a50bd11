"""billing details: the billing email, company name and address printed on an organization's invoices

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('billing_email', sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column('billing_company', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('billing_address', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('billing_address')
        batch_op.drop_column('billing_company')
        batch_op.drop_column('billing_email')
