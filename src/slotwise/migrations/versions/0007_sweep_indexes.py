"""sweep indexes: an organization's open invoices by retry time, and charges by organization

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    # The billing sweep's claim probes each organization for a due retry; slotwise doctor reads charges
    # a batch of organizations at a time.
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index('ix_invoices_open_org_retry', ['org_id', 'next_retry_at'], unique=False,
                              postgresql_where=OPEN, sqlite_where=OPEN)
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_charges_org_id'), ['org_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_charges_org_id'))
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_open_org_retry')
