"""outbound webhooks: endpoints per tenant and the transactional outbox of their events

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('webhook_endpoints',
    sa.Column('id', _ID, nullable=False),
    sa.Column('tenant_id', _ID, nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('event_types', sa.Text(), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=True),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('created_at_us', sa.BigInteger(), nullable=False),
    sa.Column('deleted_at_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webhook_endpoints_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_index(op.f('ix_webhook_endpoints_tenant_id_deleted_at_us'), 'webhook_endpoints', ['tenant_id', 'deleted_at_us'])
    op.create_table('webhook_messages',
    sa.Column('id', _ID, nullable=False),
    sa.Column('tenant_id', _ID, nullable=False),
    sa.Column('endpoint_id', _ID, nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at_us', sa.BigInteger(), nullable=False),
    sa.Column('claim_token', sa.BigInteger(), nullable=True),
    sa.Column('claim_until_us', sa.BigInteger(), nullable=True),
    sa.Column('created_at_us', sa.BigInteger(), nullable=False),
    sa.Column('last_attempt_at_us', sa.BigInteger(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_messages_endpoint_id_webhook_endpoints')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_webhook_messages_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_messages')),
    sa.UniqueConstraint('tenant_id', 'endpoint_id', 'event_id', name=op.f('uq_webhook_messages_tenant_id_endpoint_id_event_id'))
    )
    op.create_index(op.f('ix_webhook_messages_state_next_attempt_at_us'), 'webhook_messages', ['state', 'next_attempt_at_us'])
    op.create_index(op.f('ix_webhook_messages_tenant_id_endpoint_id_id'), 'webhook_messages', ['tenant_id', 'endpoint_id', 'id'])


def downgrade() -> None:
    op.drop_table('webhook_messages')
    op.drop_table('webhook_endpoints')
