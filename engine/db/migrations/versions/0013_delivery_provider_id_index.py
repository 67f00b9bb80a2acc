"""find a delivery by its provider id (Twilio's MessageSid): status callbacks look them up

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Without it every `failed` / `undelivered` callback read all of a tenant's deliveries.
    op.create_index(op.f('ix_deliveries_provider_id'), 'deliveries', ['provider_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_deliveries_provider_id'), table_name='deliveries')
