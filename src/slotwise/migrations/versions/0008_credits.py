"""credits: the two pools and their ledger, usage roll-ups, and the jobs table (SPEC §11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 02:46:07.751112
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slotwise.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credit_accounts',
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('plan_balance', sa.BigInteger(), nullable=False),
    sa.Column('topup_balance', sa.BigInteger(), nullable=False),
    sa.Column('plan_allowance', sa.BigInteger(), nullable=False),
    sa.Column('period_start', slotwise.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refills_at', slotwise.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('used_in_period', sa.BigInteger(), nullable=False),
    sa.Column('last_from_plan', sa.BigInteger(), nullable=False),
    sa.Column('recharge_enabled', sa.Boolean(), nullable=False),
    sa.Column('recharge_threshold', sa.BigInteger(), nullable=False),
    sa.Column('recharge_max_per_period', sa.Integer(), nullable=False),
    sa.Column('recharges_in_period', sa.Integer(), nullable=False),
    sa.Column('recharge_job_id', sa.String(length=32), nullable=True),
    sa.Column('recharge_failures', sa.Integer(), nullable=False),
    sa.Column('recharge_failed_at', slotwise.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_recharged_at', slotwise.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('recharge_disabled_reason', sa.String(length=300), nullable=True),
    sa.Column('updated_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('plan_balance >= 0 AND topup_balance >= 0', name=op.f('ck_credit_accounts_balances')),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_credit_accounts_org_id_organizations')),
    sa.PrimaryKeyConstraint('org_id', name=op.f('pk_credit_accounts'))
    )
    with op.batch_alter_table('credit_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credit_accounts_refills_at'), ['refills_at'], unique=False)

    op.create_table('credit_usage',
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('agent_key', sa.String(length=32), nullable=False),
    sa.Column('credits', sa.BigInteger(), nullable=False),
    sa.Column('messages', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_credit_usage_org_id_organizations')),
    sa.PrimaryKeyConstraint('org_id', 'day', 'agent_key', name=op.f('pk_credit_usage'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('run_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('locked_until', slotwise.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('created_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_jobs_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_run_at'), ['run_at'], unique=False)

    op.create_table('credit_ledger',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('plan_delta', sa.BigInteger(), nullable=False),
    sa.Column('topup_delta', sa.BigInteger(), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('activity', sa.String(length=16), nullable=True),
    sa.Column('model', sa.String(length=16), nullable=True),
    sa.Column('units', sa.Integer(), nullable=True),
    sa.Column('cost', sa.BigInteger(), nullable=True),
    sa.Column('agent_id', sa.String(length=32), nullable=True),
    sa.Column('playground', sa.Boolean(), nullable=False),
    sa.Column('invoice_id', sa.String(length=32), nullable=True),
    sa.Column('plan_after', sa.BigInteger(), nullable=True),
    sa.Column('topup_after', sa.BigInteger(), nullable=True),
    sa.Column('created_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind in ('refill', 'expiry', 'spend', 'topup', 'recharge', 'adjustment')", name=op.f('ck_credit_ledger_kind')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_credit_ledger_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_credit_ledger_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_ledger')),
    sa.UniqueConstraint('org_id', 'reference', name='uq_credit_ledger_org_id_reference')
    )
    with op.batch_alter_table('credit_ledger', schema=None) as batch_op:
        batch_op.create_index('ix_credit_ledger_org_created', ['org_id', 'created_at'], unique=False)

    # Every organization gets its account, empty and due for a refill at once: the billing run (or
    # the first request about it) grants the allowance of the period then in force, as for a new one.
    op.execute(sa.text(
        "insert into credit_accounts (org_id, plan_balance, topup_balance, plan_allowance, refills_at,"
        " used_in_period, last_from_plan, recharge_enabled, recharge_threshold, recharge_max_per_period,"
        " recharges_in_period, recharge_failures, updated_at)"
        " select id, 0, 0, 0, created_at, 0, 0, false, 100, 1, 0, 0, created_at from organizations"))


def downgrade() -> None:
    with op.batch_alter_table('credit_ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_credit_ledger_org_created')

    op.drop_table('credit_ledger')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_run_at'))

    op.drop_table('jobs')
    op.drop_table('credit_usage')
    with op.batch_alter_table('credit_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credit_accounts_refills_at'))

    op.drop_table('credit_accounts')
