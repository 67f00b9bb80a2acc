"""linked contacts: contact_links, and consent_events.linked_from on carbon copies

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('contact_links',
    sa.Column('id', _ID, nullable=False),
    sa.Column('tenant_id', _ID, nullable=False),
    sa.Column('contact_a', _ID, nullable=False),
    sa.Column('contact_b', _ID, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('created_at_us', sa.BigInteger(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_contact_links_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['contact_a'], ['contacts.id'], name=op.f('fk_contact_links_contact_a_contacts')),
    sa.ForeignKeyConstraint(['contact_b'], ['contacts.id'], name=op.f('fk_contact_links_contact_b_contacts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_links')),
    sa.UniqueConstraint('tenant_id', 'contact_a', 'contact_b', name=op.f('uq_contact_links_tenant_id_contact_a_contact_b'))
    )
    op.create_index(op.f('ix_contact_links_tenant_id_contact_b'), 'contact_links', ['tenant_id', 'contact_b'])
    with op.batch_alter_table('consent_events') as batch:
        batch.add_column(sa.Column('linked_from', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('consent_events') as batch:
        batch.drop_column('linked_from')
    op.drop_table('contact_links')
