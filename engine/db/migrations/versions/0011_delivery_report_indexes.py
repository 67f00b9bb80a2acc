"""deliveries: indexes for the desk's campaign pages at a million recipients

The campaign page counts a campaign's rows per (state, purpose, decision, reason): with
those columns in the index the count reads the index alone (an index-only scan on
PostgreSQL once autovacuum has marked the pages visible), never the rows. It replaces
(tenant_id, campaign_id, state), whose every use its prefix still serves, so a send writes
no more index entries than before for it.

Recipients filtered by one reason, a page at a time in audience order, walk
(tenant_id, campaign_id, reason, contact_id). Feedback (bounces, complaints) and last errors
are on few rows: partial indexes hold only those.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_deliveries_campaign_counts', 'deliveries',
                    ['tenant_id', 'campaign_id', 'state', 'purpose', 'decision', 'reason'])
    op.drop_index('ix_deliveries_tenant_id_campaign_id_state', table_name='deliveries')
    op.create_index('ix_deliveries_tenant_id_campaign_id_reason_contact_id', 'deliveries',
                    ['tenant_id', 'campaign_id', 'reason', 'contact_id'])
    op.create_index('ix_deliveries_tenant_id_campaign_id_feedback', 'deliveries',
                    ['tenant_id', 'campaign_id', 'feedback'],
                    postgresql_where=sa.text('feedback IS NOT NULL'), sqlite_where=sa.text('feedback IS NOT NULL'))
    op.create_index('ix_deliveries_tenant_id_campaign_id_state_errors', 'deliveries',
                    ['tenant_id', 'campaign_id', 'state'],
                    postgresql_where=sa.text('error IS NOT NULL'), sqlite_where=sa.text('error IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_deliveries_tenant_id_campaign_id_state_errors', table_name='deliveries')
    op.drop_index('ix_deliveries_tenant_id_campaign_id_feedback', table_name='deliveries')
    op.drop_index('ix_deliveries_tenant_id_campaign_id_reason_contact_id', table_name='deliveries')
    op.create_index('ix_deliveries_tenant_id_campaign_id_state', 'deliveries', ['tenant_id', 'campaign_id', 'state'])
    op.drop_index('ix_deliveries_campaign_counts', table_name='deliveries')
