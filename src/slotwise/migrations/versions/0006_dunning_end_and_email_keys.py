"""dunning's end and email keys: unpaid subscriptions, void invoices, case-folded email keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 00:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _backfill_email_keys(table: str) -> None:
    # Case-folding is Unicode-aware in Python, not in SQLite's lower(): compute the keys here.
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"select id, email from {table}")).fetchall()
    for row_id, email in rows:
        conn.execute(sa.text(f"update {table} set email_key = :key where id = :id"),
                     {"key": email.strip().casefold(), "id": row_id})


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_key', sa.String(length=320), nullable=True))
    _backfill_email_keys('users')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('email_key', existing_type=sa.String(length=320), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_users_email_key'), ['email_key'])

    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_key', sa.String(length=320), nullable=True))
    _backfill_email_keys('invitations')
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.alter_column('email_key', existing_type=sa.String(length=320), nullable=False)
        batch_op.drop_constraint(batch_op.f('uq_invitations_org_id'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_invitations_org_id_email_key'), ['org_id', 'email_key'])
        batch_op.create_index(batch_op.f('ix_invitations_email_key'), ['email_key'], unique=False)

    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_subscriptions_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_subscriptions_status'), "status in ('active', 'past_due', 'unpaid', 'canceled')")
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_invoices_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_invoices_status'), "status in ('open', 'paid', 'void')")

    # Past-due subscriptions whose retries are all spent were left renewing for ever: end their dunning.
    op.execute("""
        update subscriptions set status = 'unpaid'
        where status = 'past_due' and not exists (
            select 1 from invoices i
            where i.subscription_id = subscriptions.id and i.status = 'open' and i.next_retry_at is not null)
    """)


def downgrade() -> None:
    op.execute("update subscriptions set status = 'past_due' where status = 'unpaid'")
    op.execute("update invoices set status = 'open' where status = 'void'")
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_invoices_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_invoices_status'), "status in ('open', 'paid')")
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_subscriptions_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_subscriptions_status'), "status in ('active', 'past_due', 'canceled')")
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_email_key'))
        batch_op.drop_constraint(batch_op.f('uq_invitations_org_id_email_key'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_invitations_org_id'), ['org_id', 'email'])
        batch_op.drop_column('email_key')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_email_key'), type_='unique')
        batch_op.drop_column('email_key')
