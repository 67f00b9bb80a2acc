"""contact search indexes (PostgreSQL only): the address book's prefix and phone searches

Revision ID: 0012
Revises: 0011

`engine/api/contact_views.py` `contact_page` matches a name or an email by its lowercased
prefix and a phone number by a run of its digits. Over a million contacts each needs an
index or the search reads the whole table (docs/benchmarks.md, bench_desk_contacts):

- btree `text_pattern_ops` on the lowercased first name, last name, "first last" and email
  serve `LIKE 'prefix%'` whatever the database's collation; each ends with the id and
  INCLUDEs the column it lowercases, so a common prefix is read from the index alone
  (PostgreSQL plans an index-only scan of an expression index only when the raw column is
  in it too): "ava" over a million contacts, 1.1 s with heap reads, 0.16 s without;
- a trigram GIN index (pg_trgm, a contrib extension shipped with PostgreSQL) on phone
  numbers serves `LIKE '%digits%'`.

SQLite gets none: its address books are small, and its LIKE is case-insensitive already.
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_FULL_NAME = "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))"


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    op.execute(
        'CREATE INDEX ix_contacts_search_first ON contacts (tenant_id, lower(first_name) text_pattern_ops, id) '
        'INCLUDE (first_name)'
    )
    op.execute(
        'CREATE INDEX ix_contacts_search_last ON contacts (tenant_id, lower(last_name) text_pattern_ops, id) '
        'INCLUDE (last_name)'
    )
    op.execute(
        f'CREATE INDEX ix_contacts_search_full ON contacts (tenant_id, ({_FULL_NAME}) text_pattern_ops, id) '
        'INCLUDE (first_name, last_name)'
    )
    op.execute(
        "CREATE INDEX ix_contact_points_search_email ON contact_points "
        "(tenant_id, lower(address) text_pattern_ops, contact_id) INCLUDE (address) WHERE kind = 'email'"
    )
    op.execute(
        "CREATE INDEX ix_contact_points_search_phone ON contact_points "
        "USING gin (address gin_trgm_ops) WHERE kind = 'phone'"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for name in ('ix_contact_points_search_phone', 'ix_contact_points_search_email', 'ix_contacts_search_full',
                 'ix_contacts_search_last', 'ix_contacts_search_first'):
        op.execute(f'DROP INDEX IF EXISTS {name}')
