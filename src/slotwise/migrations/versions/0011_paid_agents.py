"""paid agents (SPEC §13): each agent's access mode and Paid Access Configuration, the organization's
contacts, the passes visitors buy, and a pass's payment waiting for the visitor's bank

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slotwise.models


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_mode', sa.String(length=16), server_default='free', nullable=False))
        batch_op.add_column(sa.Column('paid_price', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('paid_currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('paid_access_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('paid_message_credits', sa.Integer(), nullable=True))
        batch_op.create_check_constraint('access_mode', "access_mode in ('free', 'restricted', 'paid')")
    op.create_table('contacts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('email_key', sa.String(length=320), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_contacts_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    sa.UniqueConstraint('org_id', 'email_key', name=op.f('uq_contacts_org_id')),
    )
    op.create_index('ix_contacts_org_created', 'contacts', ['org_id', 'created_at', 'id'], unique=False)
    op.create_table('passes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('agent_id', sa.String(length=32), nullable=False),
    sa.Column('contact_id', sa.String(length=32), nullable=False),
    sa.Column('visitor_email', sa.String(length=320), nullable=False),
    sa.Column('email_key', sa.String(length=320), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('platform_fee', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('access_days', sa.Integer(), nullable=False),
    sa.Column('message_credits', sa.Integer(), nullable=False),
    sa.Column('credits_left', sa.Integer(), nullable=False),
    sa.Column('expires_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('refunded_at', slotwise.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refund_reference', sa.String(length=64), nullable=True),
    sa.Column('gateway_reference', sa.String(length=64), nullable=False),
    sa.Column('checkout_key', sa.String(length=128), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('credits_left >= 0', name=op.f('ck_passes_credits_left_not_negative')),
    sa.CheckConstraint('price > 0 and platform_fee >= 0 and net = price - platform_fee', name=op.f('ck_passes_revenue')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_passes_agent_id_agents')),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_passes_contact_id_contacts')),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_passes_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_passes')),
    sa.UniqueConstraint('agent_id', 'checkout_key', name=op.f('uq_passes_agent_id')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_passes_token_hash')),
    )
    op.create_index('ix_passes_agent_email', 'passes', ['agent_id', 'email_key', 'expires_at'], unique=False)
    op.create_index('ix_passes_org_created', 'passes', ['org_id', 'created_at', 'id'], unique=False)
    op.create_index(op.f('ix_passes_gateway_reference'), 'passes', ['gateway_reference'], unique=False)
    op.create_table('pass_checkouts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('org_id', sa.String(length=32), nullable=False),
    sa.Column('agent_id', sa.String(length=32), nullable=False),
    sa.Column('checkout_key', sa.String(length=128), nullable=False),
    sa.Column('visitor_email', sa.String(length=320), nullable=False),
    sa.Column('price', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('access_days', sa.Integer(), nullable=False),
    sa.Column('message_credits', sa.Integer(), nullable=False),
    sa.Column('action_intent', sa.String(length=128), nullable=False),
    sa.Column('created_at', slotwise.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_pass_checkouts_agent_id_agents')),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_pass_checkouts_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pass_checkouts')),
    )
    op.create_index(op.f('ix_pass_checkouts_agent_id'), 'pass_checkouts', ['agent_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_pass_checkouts_agent_id'), table_name='pass_checkouts')
    op.drop_table('pass_checkouts')
    op.drop_index(op.f('ix_passes_gateway_reference'), table_name='passes')
    op.drop_index('ix_passes_org_created', table_name='passes')
    op.drop_index('ix_passes_agent_email', table_name='passes')
    op.drop_table('passes')
    op.drop_index('ix_contacts_org_created', table_name='contacts')
    op.drop_table('contacts')
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_constraint('access_mode', type_='check')
        batch_op.drop_column('paid_message_credits')
        batch_op.drop_column('paid_access_days')
        batch_op.drop_column('paid_currency')
        batch_op.drop_column('paid_price')
        batch_op.drop_column('access_mode')
