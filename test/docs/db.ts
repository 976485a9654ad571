/** The user's own database module the examples import as './db.js' ("yours"): only its shape matters. */
export interface User {
  id: string;
  name: string;
}

export async function connectToDatabase(): Promise<void> {}

export async function closeDatabase(): Promise<void> {}

export const db = {
  async find(id: string): Promise<User | undefined> {
    return id === 'alice' ? { id, name: 'Alice' } : undefined;
  },
};
