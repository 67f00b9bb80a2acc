"""contact_points: one composite foreign key to (contacts.tenant_id, contacts.id)

Revision ID: 0014
Revises: 0013

A point referred to its contact and to its tenant with two single-column keys: two
index probes and two row locks for every point a write inserts or re-keys, and nothing to
stop a point of tenant A naming a contact of tenant B. One key on (tenant_id, contact_id)
to contacts (tenant_id, id) checks both at once; the tenant exists because the contact's
own key to tenants says so. A bulk import writes ~1.9 points a contact, so this is one
foreign-key check a contact fewer (docs/benchmarks.md, "Fourth pass").

contacts' (tenant_id, id) index becomes unique (it is: id is the primary key), which a
foreign key needs on both databases; same columns, same name, so queries keep using it.
Existing rows are checked when the key is added: a point whose tenant differs from its
contact's stops the migration (none can be written by this code).

On SQLite the points table is rebuilt (batch mode: SQLite cannot alter a constraint); no
table refers to contact_points, so the rebuild is safe with foreign keys on.
"""

from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_tenant_id_id')
        batch_op.create_index('ix_contacts_tenant_id_id', ['tenant_id', 'id'], unique=True)
    with op.batch_alter_table('contact_points', schema=None) as batch_op:
        batch_op.drop_constraint('fk_contact_points_contact_id_contacts', type_='foreignkey')
        batch_op.drop_constraint('fk_contact_points_tenant_id_tenants', type_='foreignkey')
        batch_op.create_foreign_key('fk_contact_points_tenant_id_contacts', 'contacts',
                                    ['tenant_id', 'contact_id'], ['tenant_id', 'id'])


def downgrade() -> None:
    with op.batch_alter_table('contact_points', schema=None) as batch_op:
        batch_op.drop_constraint('fk_contact_points_tenant_id_contacts', type_='foreignkey')
        batch_op.create_foreign_key('fk_contact_points_tenant_id_tenants', 'tenants', ['tenant_id'], ['id'])
        batch_op.create_foreign_key('fk_contact_points_contact_id_contacts', 'contacts', ['contact_id'], ['id'])
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index('ix_contacts_tenant_id_id')
        batch_op.create_index('ix_contacts_tenant_id_id', ['tenant_id', 'id'], unique=False)
