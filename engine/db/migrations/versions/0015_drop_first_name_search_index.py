"""contacts: the first-name search index goes; "first last" answers the same searches

Revision ID: 0015
Revises: 0014

The address book matches a first name by its beginning (`lower(first_name) LIKE 'ann%'`)
and "first last" by its beginning too. Every contact whose first name begins with a
fragment has a "first last" that begins with it, so the first-name condition finds nothing
the full-name one does not: `engine/api/contact_views.py` no longer asks it, and its index
(migration 0012) is one more random btree insert for every contact an import writes, for
no search (docs/benchmarks.md, "Sixth pass").

PostgreSQL only, as 0012.
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('DROP INDEX IF EXISTS ix_contacts_search_first')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(
        'CREATE INDEX IF NOT EXISTS ix_contacts_search_first ON contacts '
        '(tenant_id, lower(first_name) text_pattern_ops, id) INCLUDE (first_name)'
    )
